// The live transcription page: the microphone, through an AudioWorklet, as 24 kHz
// PCM16 over /v1/realtime (OpenAI's realtime transcription protocol), and the text as
// it arrives: each turn's deltas while it is spoken, its final once decoded.

const RATE = 24000;
const FRAME_SAMPLES = RATE / 10; // 100 ms per append event
// How the openai SDK carries a key from a browser: a WebSocket subprotocol.
const KEY_PROTOCOL = "openai-insecure-api-key.";
// How long Stop waits for the last turns' finals before it closes the session.
const FINALS_WAIT_MS = 15000;

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("controls"),
  key: $("key"),
  language: $("language"),
  start: $("start"),
  stop: $("stop"),
  status: $("status"),
  transcript: $("transcript"),
};

function show(state, message) {
  ui.status.dataset.state = state;
  ui.status.textContent = message;
}

// One paragraph per turn, in the order speech started: grey while its deltas arrive,
// replaced by the final. A turn whose final is empty (no speech) disappears.
class Transcript {
  constructor(element) {
    this.element = element;
    this.turns = new Map();
  }

  turn(item) {
    let turn = this.turns.get(item);
    if (!turn) {
      const paragraph = document.createElement("p");
      paragraph.className = "partial";
      paragraph.dataset.item = item;
      this.element.append(paragraph);
      turn = { paragraph, text: "", final: false };
      this.turns.set(item, turn);
      this.count();
    }
    return turn;
  }

  delta(item, text) {
    const turn = this.turn(item);
    if (turn.final) return;
    turn.text += text;
    turn.paragraph.textContent = turn.text;
  }

  completed(item, text) {
    const turn = this.turn(item);
    turn.final = true;
    turn.paragraph.className = "final";
    turn.paragraph.textContent = text.trim();
    if (!text.trim()) turn.paragraph.remove();
    this.count();
  }

  open() {
    let open = 0;
    for (const turn of this.turns.values()) if (!turn.final) open += 1;
    return open;
  }

  count() {
    this.element.dataset.open = String(this.open());
  }
}

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// The microphone at 24 kHz where the browser resamples it (Chromium does), at the
// device's rate otherwise, with the worklet resampling.
async function openCapture(onFrame) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
  });
  let context = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
  let source;
  try {
    source = context.createMediaStreamSource(stream);
  } catch (error) {
    if (error.name !== "NotSupportedError") throw error;
    await context.close();
    context = new AudioContext({ latencyHint: "interactive" });
    source = context.createMediaStreamSource(stream);
  }
  await context.audioWorklet.addModule("/realtime/pcm16-worklet.js");
  // No outputs: the browser pulls it as a sink, and nothing is played back.
  const node = new AudioWorkletNode(context, "pcm16-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    channelCount: 1,
    channelCountMode: "explicit",
    processorOptions: { targetRate: RATE, frameSamples: FRAME_SAMPLES },
  });
  node.port.onmessage = (event) => onFrame(event.data);
  source.connect(node);
  if (context.state === "suspended") await context.resume();
  return {
    close() {
      node.port.onmessage = null;
      source.disconnect();
      for (const track of stream.getTracks()) track.stop();
      return context.close();
    },
  };
}

// Checks the key over HTTP first: a refused WebSocket handshake shows the page no
// status or reason, an HTTP answer does.
async function checkKey(key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const answer = await fetch("/v1/models", { headers });
  if (answer.ok) return;
  let message = `${answer.status}`;
  try {
    message = (await answer.json()).error.message;
  } catch {
    // not the service's JSON error: keep the status
  }
  throw new Error(answer.status === 401 ? `the service refused the key: ${message}` : message);
}

class LiveSession {
  constructor() {
    this.transcript = null;
    this.socket = null;
    this.capture = null;
    this.sentSeconds = 0;
    this.speaking = false;
    this.stopping = false;
  }

  async start(key, language) {
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      throw new Error("this page needs the microphone: open it over HTTPS (or on localhost)");
    }
    if (key && !/^[\x21-\x7e]+$/.test(key)) {
      throw new Error("an API key is printable ASCII without spaces");
    }
    ui.transcript.replaceChildren();
    this.transcript = new Transcript(ui.transcript);
    this.transcript.count();
    show("connecting", "Connecting…");
    await checkKey(key);
    const url = new URL("/v1/realtime?intent=transcription", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const protocols = ["realtime", ...(key ? [KEY_PROTOCOL + key] : [])];
    const socket = (this.socket = new WebSocket(url, protocols));
    await new Promise((resolve, reject) => {
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "session.created") resolve();
        this.received(message);
      };
      socket.onclose = (event) => {
        reject(new Error(`the service closed the connection (${event.code}${event.reason ? `: ${event.reason}` : ""})`));
        this.closed(event);
      };
    });
    if (language) {
      socket.send(JSON.stringify({
        type: "session.update",
        session: { type: "transcription", audio: { input: { transcription: { language } } } },
      }));
    }
    this.capture = await openCapture((frame) => this.send(frame));
    show("listening", "Listening…");
  }

  send(frame) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN || this.stopping) return;
    this.socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: base64(frame) }));
    this.sentSeconds += frame.byteLength / 2 / RATE;
    ui.status.dataset.sent = this.sentSeconds.toFixed(1);
    if (this.speaking) show("listening", `Listening… (speech, ${this.sentSeconds.toFixed(0)} s sent)`);
    else show("listening", `Listening… (${this.sentSeconds.toFixed(0)} s sent)`);
  }

  received(message) {
    switch (message.type) {
      case "input_audio_buffer.speech_started":
        this.speaking = true;
        this.transcript.turn(message.item_id);
        break;
      case "input_audio_buffer.speech_stopped":
      case "input_audio_buffer.committed":
        this.speaking = false;
        break;
      case "conversation.item.input_audio_transcription.delta":
        this.transcript.delta(message.item_id, message.delta);
        break;
      case "conversation.item.input_audio_transcription.completed":
        this.transcript.completed(message.item_id, message.transcript);
        this.settled();
        break;
      case "conversation.item.input_audio_transcription.failed":
        this.transcript.completed(message.item_id, "");
        show("error", `a turn was not transcribed: ${message.error.message}`);
        this.settled();
        break;
      case "error":
        if (message.error.code === "input_audio_buffer_commit_empty") break;
        show("error", message.error.message);
        break;
      default:
        break;
    }
  }

  closed(event) {
    this.socket = null;
    if (this.capture) this.capture.close();
    this.capture = null;
    ui.start.disabled = false;
    ui.stop.disabled = true;
    if (this.stopping) show("stopped", `Stopped after ${this.sentSeconds.toFixed(1)} s.`);
    else if (ui.status.dataset.state !== "error" || event.code !== 1006) {
      show("error", `The session ended (${event.code}${event.reason ? `: ${event.reason}` : ""}).`);
    }
  }

  // Stop: no more audio; the open turn is committed, and the session closes once every
  // turn has its final (or after FINALS_WAIT_MS).
  async stop() {
    this.stopping = true;
    show("stopping", "Finishing the last words…");
    if (this.capture) await this.capture.close();
    this.capture = null;
    if (!this.socket) return;
    if (this.speaking) this.socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
    this.giveUp = setTimeout(() => this.close(), FINALS_WAIT_MS);
    this.settled();
  }

  settled() {
    if (this.stopping && !this.speaking && this.transcript.open() === 0) this.close();
  }

  close() {
    clearTimeout(this.giveUp);
    if (this.socket) this.socket.close(1000, "stopped");
  }
}

let session = null;

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  ui.start.disabled = true;
  session = new LiveSession();
  try {
    await session.start(ui.key.value.trim(), ui.language.value.trim());
    ui.stop.disabled = false;
  } catch (error) {
    show("error", error.message);
    if (session.socket) session.socket.close();
    ui.start.disabled = false;
  }
});

ui.stop.addEventListener("click", () => {
  ui.stop.disabled = true;
  if (session) session.stop();
});
