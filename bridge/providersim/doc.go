// Package providersim is a local voice-AI provider that speaks the ElevenLabs
// Conversational AI protocol (REST and websocket), so development, tests and load
// tests run the gateway's real provider adapter over real HTTP and websockets.
// It runs in-process (New, an http.Handler) or as `cxco providersim`.
//
// # REST
//
// POST /v1/convai/agents/create, GET/PATCH/DELETE /v1/convai/agents/{id} keep the
// agent's conversation_config as the provider's own JSON document.
// GET /v1/convai/conversations/{id} is a conversation with its transcript; once
// the socket is gone it is "processing", then "done" with its analysis after
// Options.AnalysisDelay. GET /v1/convai/conversation/get-signed-url?agent_id=
// (also get_signed_url) returns a signed websocket URL valid for 15 minutes.
// Everything needs a good xi-api-key (Options.APIKeys; empty: any non-empty key).
//
// # The conversation websocket
//
// GET /v1/convai/conversation?agent_id=ID, with an xi-api-key header or a
// conversation_signature (or token) query parameter from get-signed-url. The
// subprotocol "convai" is selected when offered. Before the upgrade: 503 while
// refusing (SetRefuse), 401 for missing or bad credentials (a key is always
// needed, whatever the agent's auth setting), 404 for an unknown agent.
//
// All frames are JSON text. In order:
//
//  1. The client may send conversation_initiation_client_data first. The
//     simulator waits for it up to 300 ms, and for SetConnectDelay, then sends
//     conversation_initiation_metadata {conversation_id "conv_...",
//     agent_output_audio_format, user_input_audio_format} from the agent's
//     tts.agent_output_audio_format and asr.user_input_audio_format (ulaw_8000
//     when unset; pcm_8000 ... pcm_48000 also work). It keeps dynamic_variables,
//     conversation_config_override (agent.prompt.prompt, agent.first_message,
//     agent.language, tts.voice_id) and custom_llm_extra_body on the
//     conversation. An override the agent's platform_settings.overrides does not
//     allow gets an error event (error_type override_error) and close 1008, as
//     the real service does; an audio format it does not speak, value_error and
//     1008.
//  2. The opening line: the override's first_message, else the agent's, with
//     {{variable}} filled from dynamic_variables; an empty override means the
//     agent waits for the caller. It goes out as audio chunks with agent_response
//     right after the first one.
//  3. The agent's voice is a 440 Hz sine at -12 dBFS (RMS), 60 ms per character
//     of its text, at least 0.8 s and at most 4 s. Audio goes out in chunks of
//     110-470 ms (not multiples of 20 ms), the first 0.5 s of a response at once
//     and the rest at twice real time. Every event with an event_id (audio,
//     agent_response, user_transcript, agent_response_correction,
//     client_tool_call, ping) takes the next number of one increasing counter.
//  4. Caller audio is {"user_audio_chunk": base64} in the input format, of any
//     length. An utterance is speech (10 ms frames above -40 dBFS RMS) lasting
//     at least 100 ms, ended by 500 ms of silence; everything runs on the audio
//     received, so audio sent faster than real time works the same. Each one is
//     answered with user_transcript "(caller spoke 1.4 s)", then audio that
//     echoes the utterance (converted to the output format, at most 10 s) with
//     agent_response "I heard you for 1.4 seconds.".
//  5. Barge-in: a response is playing at the caller's end until its length has
//     passed by either clock: the wall clock since its first audio went out, or
//     the caller's audio clock (caller audio received since then); with a
//     caller streaming in real time the two agree. When an utterance starts
//     (100 ms into it) while one plays: interruption {event_id of the last
//     audio sent}, no more of that response's audio, and
//     agent_response_correction with the whole words heard so far plus "..."
//     (empty if none). Later audio has larger event_ids. A new response (to a
//     digit or a user_message) interrupts one still playing in the same way;
//     one that has played but is not all sent yet is sent in full first.
//  6. ping {event_id, ping_ms} every Options.PingInterval (2 s); ping_ms is
//     null until a pong with a ping's event_id has come back, then the last
//     round trip in milliseconds.
//  7. Keypad digits arrive as contextual_update text; the gateway sends
//     "The caller pressed the key # on the keypad." ("pressed 5", "digit: *",
//     "DTMF 0" and similar work too; the first digit after one of the words
//     press, digit, DTMF, key, keypad, button, tone, enter, typed or dial counts).
//     "#": agent_response "Thank you for calling. Goodbye!" with its audio, then
//     (after all of it is sent) client_tool_call end_call {reason: "caller
//     pressed #"}; on its client_tool_result, or Options.ToolTimeout (5 s)
//     without one, close 1000. "0": if the agent has a transfer_to_number tool
//     (prompt.built_in_tools.transfer_to_number.params.transfers[0].phone_number,
//     or its transfer_destination), client_tool_call transfer_to_number
//     {transfer_number, reason: "caller pressed 0"}; a client_tool_result with
//     is_error gets "Sorry, I could not transfer you.", a good one makes the
//     agent silent (no transcripts, no answers) until the socket closes. No
//     transfer tool: "Sorry, I cannot transfer calls.". Any other digit:
//     "You pressed 5.".
//  8. user_message {text} is a user turn, answered "You wrote: <text>".
//     user_activity and pong are accepted; client_tool_result and
//     contextual_update are recorded on the conversation. Unknown types are
//     ignored (the real service closes 1008 with invalid_message; ignoring is
//     kinder to a client newer than the simulator). Malformed JSON or base64:
//     error {code 1008, error_type invalid_message}, then close 1008.
//  9. The agent's conversation.client_events is honoured as by the real
//     service: events not listed are not sent (the default leaves out
//     client_tool_call and agent_response_correction; without client_tool_call
//     "#" closes 1000 right after the goodbye, like the real end_call system
//     tool). conversation_initiation_metadata and error are always sent.
//  10. Other endings: conversation.max_duration_seconds gives error
//     max_duration_exceeded and close 1000; no client frame for
//     Options.ReceiveTimeout (60 s) gives transport_receive_timeout and close
//     1002.
//
// # Test hooks
//
// For the gateway's tests, on *Server: DropConversations (close every live
// socket without a close frame), SetRefuse (503 for new sockets),
// SetConnectDelay (hold conversation_initiation_metadata back), Conversations
// and ConversationByID (copies, with what the client sent), Close; in Options:
// PingInterval, AnalysisDelay, ToolTimeout, ReceiveTimeout and
// OnConversationEnd. The same over HTTP for `cxco providersim`, with the same
// xi-api-key: POST /sim/drop, POST /sim/refuse?on=1|0, POST /sim/delay?ms=N,
// GET /sim/conversations.
//
// Each conversation socket runs two goroutines: the HTTP handler's, which reads
// frames and runs the utterance detector, and the agent's, which owns the
// conversation and writes every data frame (the ping ticker and the audio pacer
// are timers in its loop). They talk through a bounded queue.
package providersim
