// What a web app built on HeyGen's official client does, step by step, with every event the
// client emits written down. The finished report is POSTed to /report on this page's own
// server, where the Python test reads it. Query parameters: base (the emulator's base URL,
// HTTPS on the default port, because the client builds its WebSocket URL without the
// port), key (an API key the emulator accepts), transport (websocket, the default, or
// livekit: the voice-chat transport) and push_to_talk (1 for a push-to-talk session, which
// this client allows with the LiveKit transport only).
import StreamingAvatar, {
  AvatarQuality,
  StreamingEvents,
  TaskMode,
  TaskType,
  VoiceChatTransport,
} from "@heygen/streaming-avatar";

const params = new URLSearchParams(location.search);
const base = params.get("base");
const key = params.get("key");
const transport = params.get("transport") === "livekit" ? VoiceChatTransport.LIVEKIT : VoiceChatTransport.WEBSOCKET;
const pushToTalk = params.get("push_to_talk") === "1";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const t0 = performance.now();
const report = { steps: [], events: [], errors: [], video: null, session_id: null };
const since = () => Math.round(performance.now() - t0);
// One sequence for steps and events: milliseconds alone cannot order two in the same one.
let seq = 0;

function step(name) {
  report.steps.push({ name, t: since(), i: seq++ });
  document.getElementById("log").textContent += `${since()} ms ${name}\n`;
}

// The parts of an event worth asserting on: its type and text, never a token.
function summary(detail) {
  if (detail instanceof MediaStream) {
    return { video_tracks: detail.getVideoTracks().length, audio_tracks: detail.getAudioTracks().length };
  }
  if (detail && typeof detail === "object") {
    const { type, event_type, message, task_id, duration_ms } = detail;
    return { type, event_type, message, task_id, duration_ms };
  }
  return detail ?? null;
}

// The next time the avatar emits `name`, or a rejection naming it after `ms`.
function next(avatar, name, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} within ${ms} ms`)), ms);
    avatar.on(name, function once(event) {
      clearTimeout(timer);
      avatar.off(name, once);
      resolve(event.detail);
    });
  });
}

// Frames the page actually presented, and their size, from the stream the client handed over.
function watch(stream) {
  const video = document.getElementById("avatar");
  const stats = { frames: 0, width: 0, height: 0, audio_tracks: stream.getAudioTracks().length };
  report.video = stats;
  video.srcObject = stream;
  const onFrame = (_now, meta) => {
    stats.frames += 1;
    stats.width = meta.width;
    stats.height = meta.height;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  video.play().catch((error) => report.errors.push(`video.play: ${error}`));
}

async function main() {
  step("create_token");
  const answer = await fetch(`${base}/v1/streaming.create_token`, {
    method: "POST",
    headers: { "x-api-key": key },
  });
  const token = (await answer.json()).data.token;

  const avatar = new StreamingAvatar({ token, basePath: base });
  for (const name of Object.values(StreamingEvents)) {
    avatar.on(name, (event) => report.events.push({ name, t: since(), i: seq++, detail: summary(event.detail) }));
  }
  avatar.on(StreamingEvents.STREAM_READY, (event) => watch(event.detail));

  step("createStartAvatar");
  try {
    await converse(avatar);
  } finally {
    // A failed step must not leave the session open, as an app's own error path should not.
    if (!report.steps.some((s) => s.name === "stopAvatar")) {
      await avatar.stopAvatar().catch(() => {});
    }
  }
  step("done");
}

async function converse(avatar) {
  const ready = next(avatar, StreamingEvents.STREAM_READY, 20000);
  const session = await avatar.createStartAvatar({
    avatarName: "Emulated_Wayne",
    quality: AvatarQuality.Low,
    language: "en",
    voiceChatTransport: transport,
    enablePushToTalk: pushToTalk,
  });
  report.session_id = session.session_id;
  await ready;

  step("speak repeat sync");
  let stopped = next(avatar, StreamingEvents.AVATAR_STOP_TALKING, 30000);
  await avatar.speak({ text: "Hello from the official client.", taskType: TaskType.REPEAT, taskMode: TaskMode.SYNC });
  await stopped;

  // An async talk goes over the voice-chat WebSocket as a protobuf text frame, or with the
  // LiveKit transport as a data message.
  step("speak talk async");
  stopped = next(avatar, StreamingEvents.AVATAR_STOP_TALKING, 30000);
  await avatar.speak({ text: "What can you do?", taskType: TaskType.TALK });
  await stopped;

  // The microphone is Chromium's fake device playing an espeak-ng recording: on the
  // WebSocket as protobuf frames, or published to the room as a LiveKit track.
  step("startVoiceChat");
  const heard = next(avatar, StreamingEvents.USER_STOP, 30000);
  const replied = next(avatar, StreamingEvents.AVATAR_STOP_TALKING, 45000);
  await avatar.startVoiceChat();
  if (pushToTalk) {
    step("pushToTalkStart");
    await avatar.pushToTalkStart();
    await sleep(3000);
    step("pushToTalkStop");
    await avatar.pushToTalkStop();
  }
  await heard;
  await replied;

  step("closeVoiceChat");
  await avatar.closeVoiceChat();
  step("stopAvatar");
  await avatar.stopAvatar();
}

main()
  .catch((error) => report.errors.push(String(error && error.stack ? error.stack : error)))
  .finally(() => fetch("/report", { method: "POST", body: JSON.stringify(report) }));
