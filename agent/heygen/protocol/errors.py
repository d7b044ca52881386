"""The one error the sans-I/O protocol layer raises."""


class ProtocolError(ValueError):
    """A message from the other side does not follow the wire protocol.

    Raised by the parsers, never for an unknown event type: those are kept as generic
    events so that a newer server does not break an older client.
    """
