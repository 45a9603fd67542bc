// Package openaisim is a local stand-in for OpenAI's Realtime API over its
// websocket (GA protocol), so tests, development and load tests run the
// gateway's real OpenAI provider over a real websocket. It runs in-process
// (New, an http.Handler) or inside `cxco providersim` (at /v1/realtime).
//
// It is written from OpenAI's published material, never from our client (it
// does not import it): the Realtime API reference's client and server events
// (developers.openai.com/api/reference/resources/realtime/client-events and
// server-events), the Realtime conversations guide (voice activity detection,
// interruptions and conversation.item.truncate, function calling), and the
// event types OpenAI generates from its OpenAPI document into openai-python
// (src/openai/types/realtime). Each behaviour names its source below; where the
// sources disagree, Options has a switch.
//
// # Connecting
//
// GET /v1/realtime?model=M with Authorization: Bearer <key>: no key, or one
// not in Options.Keys (when set), is 401 before the upgrade; SetRefuse makes it
// 503. The first server event is session.created with the defaults the
// reference gives (audio/pcm at 24 kHz both ways, server_vad, voice alloy).
//
// # Events (client → server)
//
//   - session.update: the fields present replace the session's (the
//     reference: "Only the fields that are present in the session.update are
//     updated"; turn_detection null turns it off); answered with
//     session.updated carrying the whole session. A field the reference does
//     not have, or a bad value, is an error event (invalid_request_error,
//     unknown_parameter / invalid_value) and the session stays as it was.
//   - input_audio_buffer.append: base64 audio in the session's input format
//     (audio/pcmu, audio/pcma or 24 kHz audio/pcm). With turn detection on,
//     the simulated VAD (energy, as package simaudio's detector: speech above
//     -40 dBFS for 100 ms starts an utterance, 500 ms of silence ends it, on
//     the audio's own clock) sends input_audio_buffer.speech_started
//     {audio_start_ms, item_id}, then speech_stopped {audio_end_ms},
//     input_audio_buffer.committed, conversation.item.added/done (a user
//     message), conversation.item.input_audio_transcription.completed
//     "(caller spoke 1.4 s)" when transcription is configured, and — with
//     create_response — a response: the echo of the utterance and the text
//     "I heard you for 1.4 seconds." (the simulated model).
//   - Barge-in (guide, "Handling interruptions"): speech that starts while a
//     response's audio is still playing at the client (by the wall clock and
//     the client's audio clock) cancels the response when interrupt_response
//     is on: no more audio, response.done with status cancelled.
//   - conversation.item.truncate {item_id, content_index, audio_end_ms}: an
//     assistant message item only; audio_end_ms beyond the audio sent is an
//     error (reference: "If the audio_end_ms is greater than the actual audio
//     duration, the server will respond with an error"); else
//     conversation.item.truncated, and the item's transcript is dropped.
//   - conversation.item.create: user and system messages (input_text),
//     function_call_output; answered with conversation.item.added and
//     conversation.item.done. A system message is context only.
//   - response.create: a response while one is in progress is an error
//     (conversation_already_has_active_response). What it says: after a
//     function_call_output, "Done."; after a user text message, "You wrote:
//     <text>"; with instructions that quote a passage, that passage (the
//     opening line); else "How can I help?".
//   - response.cancel: the response in progress ends, cancelled.
//
// # Responses (server → client)
//
// response.created; response.output_item.added (an assistant message);
// response.content_part.added (audio); the audio as response.output_audio.delta
// (Options.BetaAudioEvents: response.audio.delta, as openai-python's generated
// type still names it) in chunks of 100-300 ms, the first 0.5 s at once and the
// rest at twice real time, in the session's output format, a 440 Hz tone of
// 60 ms per character (simaudio) or the echo; response.output_audio_transcript
// .delta and .done; response.output_audio.done; response.content_part.done;
// response.output_item.done; a function call when the model makes one
// (response.output_item.added {type function_call, name, call_id},
// response.function_call_arguments.delta and .done, output_item.done); and
// response.done with the response's status, output and usage (input_tokens,
// output_tokens, total_tokens and their details; the simulated counts: one
// audio token per 50 ms, one text token per 4 characters).
//
// # Test hooks
//
// The simulated model calls a tool only when a test asks it to, by name
// (Options.Hooks, EnableHook): "keypad_hash_ends_call" (a user message
// containing "#" gets a farewell and an end_call function call, when the
// session declares end_call), "keypad_zero_calls_transfer" (one containing "0"
// gets transfer_call with the first destination of its enum). Faults and
// inspection: DropSessions, SetRefuse, SetConnectDelay, Sessions.
// Options.Observe sees every message either side sends (the contract check).
package openaisim
