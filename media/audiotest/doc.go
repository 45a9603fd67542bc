// Package audiotest generates test signals and measures audio, so that tests
// can check audio as audio: push a generated tone through a pipeline and
// measure its frequency, level and noise on the far side.
//
// It is for tests and tools only; nothing on a production media path should
// import it. Sample values are signed 16-bit linear PCM and levels are in dB
// relative to full scale (dBFS), where full scale is 32768.
//
// Level conventions:
//
//   - [RMSDBFS] and [ToneLevelDBFS] use the RMS convention: a full-scale sine
//     measures -3.01 dBFS and a full-scale square wave 0 dBFS.
//   - [Goertzel] returns a power normalised to the peak amplitude of a sine,
//     so that [PowerDBFS] of a full-scale sine is 0 dB. ToneLevelDBFS is that
//     figure minus 3.01 dB.
package audiotest
