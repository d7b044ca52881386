// The global that node_modules/protobufjs/dist/protobuf.min.js sets, as the module the
// official client imports.
export default globalThis.protobuf;
