// Runs on the audio thread: turns the microphone's float samples into 24 kHz PCM16
// frames of 100 ms and posts them to the page. Where the context could not be opened
// at 24 kHz (a browser that cannot resample a microphone), each output sample is the
// mean of the input samples it covers: a box filter, enough against aliasing for speech.
class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameSamples } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frameSamples = frameSamples;
    this.frame = new Int16Array(frameSamples);
    this.filled = 0;
    this.seen = 0;
    this.boundary = this.step;
    this.sum = 0;
    this.count = 0;
  }

  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (samples) {
      for (let i = 0; i < samples.length; i++) {
        this.sum += samples[i];
        this.count += 1;
        this.seen += 1;
        if (this.seen >= this.boundary) {
          const value = this.sum / this.count;
          while (this.seen >= this.boundary) {
            this.emit(value);
            this.boundary += this.step;
          }
          this.sum = 0;
          this.count = 0;
        }
      }
    }
    return true;
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === this.frameSamples) {
      this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
