// "Talk to this agent": a WebRTC call from this browser to the agent, through the
// gateway's media engine and bridge like a phone call. Signalling is one HTTP
// exchange: our complete offer (ICE gathered, PCMU preferred) to
// POST /api/agents/{id}/test-call, its answer back; DELETE /api/test-calls/{id}
// hangs up.
import { post, del } from './api.js';
import { h, mount, banner, fmtDuration } from './ui.js';

let current = null;

export function inCall() { return current !== null; }

// preferPCMU puts PCMU first in the transceiver's codec list, where the browser
// lets us (the gateway answers PCMU from any offer that has it).
function preferPCMU(tr) {
  if (!tr.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities('audio').codecs;
  const pcmu = codecs.filter((c) => c.mimeType.toLowerCase() === 'audio/pcmu');
  if (!pcmu.length) return;
  try { tr.setCodecPreferences([...pcmu, ...codecs.filter((c) => c.mimeType.toLowerCase() !== 'audio/pcmu')]); } catch { /* keep the default order */ }
}

function gathered(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') { resolve(); return; }
    const t = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
    });
  });
}

export async function startCall(agent) {
  if (current) { banner('A test call is already in progress: hang it up first.'); return; }
  const panel = document.getElementById('call');
  const state = h('div', { class: 'state', 'data-testid': 'call-state' }, 'Asking for the microphone…');
  const timer = h('div', { class: 'timer', 'data-testid': 'call-timer' }, '0:00');
  const level = h('span');
  const rx = h('div', { class: 'state small', 'data-testid': 'call-rx', dataset: { packets: '0', level: '0', audioLevel: '0' } }, 'No audio received yet');
  const hangup = h('button', { class: 'hangup', 'data-testid': 'hangup' }, 'Hang up');
  mount(panel, h('h3', {}, `Talking to ${agent.name}`), state, h('div', { class: 'row' }, timer, hangup), h('div', { class: 'meter', title: 'What you hear' }, level), rx);
  panel.hidden = false;

  const call = { id: null, pc: null, mic: null, audio: null, ctx: null, timers: [], started: 0, ended: false };
  current = call;
  const end = async (why, fromServer) => {
    if (call.ended) return;
    call.ended = true;
    call.timers.forEach(clearInterval);
    state.textContent = 'Hanging up…';
    hangup.disabled = true;
    if (call.id && !fromServer) {
      try { await del(`/api/test-calls/${call.id}`); } catch (e) { if (e.status !== 404) banner(e); }
    }
    if (call.pc) call.pc.close();
    if (call.mic) call.mic.getTracks().forEach((t) => t.stop());
    if (call.ctx) call.ctx.close().catch(() => {});
    if (call.audio) call.audio.srcObject = null;
    current = null;
    const dur = call.started ? (Date.now() - call.started) / 1000 : 0;
    state.textContent = `Call ended${why ? ` (${why})` : ''} after ${fmtDuration(dur)}.`;
    state.dataset.ended = '1';
    mount(hangup.parentNode, timer,
      call.id ? h('a', { class: 'button', href: `#/conversations/${call.id}`, 'data-testid': 'call-conversation', onclick: () => { panel.hidden = true; } }, 'View conversation') : null,
      h('button', { onclick: () => { panel.hidden = true; } }, 'Close'));
  };
  hangup.addEventListener('click', () => end('', false));

  try {
    call.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false });
  } catch (e) {
    current = null;
    panel.hidden = true;
    banner(`The microphone is not available (${e.name}: ${e.message}). Allow microphone access for this page and try again.`);
    return;
  }
  if (call.ended) return;
  state.textContent = 'Connecting…';
  const pc = new RTCPeerConnection({ iceServers: [] });
  call.pc = pc;
  for (const t of call.mic.getAudioTracks()) pc.addTrack(t, call.mic);
  pc.getTransceivers().forEach(preferPCMU);

  call.audio = h('audio', { autoplay: true, 'data-testid': 'remote-audio' });
  panel.append(call.audio);
  pc.ontrack = (ev) => {
    const stream = ev.streams[0] || new MediaStream([ev.track]);
    call.audio.srcObject = stream;
    call.audio.play().catch(() => {});
    try {
      call.ctx = new AudioContext();
      const an = call.ctx.createAnalyser();
      an.fftSize = 1024;
      call.ctx.createMediaStreamSource(stream).connect(an);
      const buf = new Float32Array(an.fftSize);
      call.timers.push(setInterval(() => {
        an.getFloatTimeDomainData(buf);
        let sum = 0;
        for (const v of buf) sum += v * v;
        const rms = Math.sqrt(sum / buf.length);
        level.style.width = `${Math.min(100, rms * 300)}%`;
        if (rms > Number(rx.dataset.level)) rx.dataset.level = rms.toFixed(4);
      }, 100));
    } catch { /* no Web Audio: no meter */ }
  };
  pc.onconnectionstatechange = () => {
    const s = pc.connectionState;
    if (s === 'connected' && !call.started) {
      call.started = Date.now();
      state.textContent = 'Connected';
      call.timers.push(setInterval(() => { timer.textContent = fmtDuration((Date.now() - call.started) / 1000); }, 250));
    } else if (s === 'failed' || s === 'closed') {
      end(s === 'failed' ? 'the connection failed' : 'the agent hung up', true);
    } else if (s === 'disconnected') {
      state.textContent = 'Connection lost, waiting…';
      setTimeout(() => { if (pc.connectionState === 'disconnected') end('the connection was lost', false); }, 4000);
    }
  };
  // What arrives, from the browser's own statistics.
  call.timers.push(setInterval(async () => {
    if (call.ended) return;
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        rx.dataset.packets = String(r.packetsReceived || 0);
        if ((r.audioLevel || 0) > Number(rx.dataset.audioLevel)) rx.dataset.audioLevel = String(r.audioLevel);
        rx.textContent = `Receiving audio: ${r.packetsReceived || 0} packets, ${r.packetsLost || 0} lost, jitter ${Math.round((r.jitter || 0) * 1000)} ms`;
      }
    });
  }, 500));

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    if (call.ended) return;
    const res = await post(`/api/agents/${agent.id}/test-call`, { type: 'offer', sdp: pc.localDescription.sdp });
    call.id = res.test_call_id;
    panel.dataset.testCall = String(res.test_call_id);
    if (call.ended) { del(`/api/test-calls/${call.id}`).catch(() => {}); return; }
    await pc.setRemoteDescription({ type: 'answer', sdp: res.sdp });
    state.textContent = 'Connecting to the agent…';
  } catch (e) {
    banner(e);
    end('it could not start', true);
  }
}
