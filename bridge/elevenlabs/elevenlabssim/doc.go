// Package elevenlabssim is a local stand-in for the ElevenLabs Agents platform (REST
// and the conversation websocket), so development, tests and load tests run the
// gateway's real provider adapter over real HTTP and websockets. It runs
// in-process (New, an http.Handler) or as `cxco providersim`.
//
// It is written from the provider's published material, never from our client
// (it does not import it): the AsyncAPI contract of the websocket
// (elevenlabs/packages, packages/types/schemas/agent.asyncapi.yaml; a copy with its
// licence is in ../contract), the Agents platform docs (Agent authentication,
// Tools: client tools, system tools, end call, transfer to number, "Agent tools
// deprecation", Events), and the official SDKs (elevenlabs-python's conversation.py
// and its generated request models; @elevenlabs/client's BaseConversation). Each
// behaviour below names its source; where the sources are silent or disagree,
// Options has a switch and the tests run both ways. By default the simulator is
// strict: it does what the real service does and nothing that exists only for
// tests (that is behind the named test hooks of hooks.go).
//
// # Accounts and credentials
//
// Every REST call needs an xi-api-key (401 otherwise). Keys belong to accounts
// (Options.Accounts; by default each distinct key is an account of its own); an
// agent or tool belongs to the account that created it and is 404 to any other
// account's key (Agents docs: agents live in a workspace).
//
// # REST
//
//   - POST /v1/convai/agents/create, GET/PATCH/DELETE /v1/convai/agents/{id}: the
//     agent's conversation_config and platform_settings as the provider's own
//     JSON document. Bodies are validated (validate.go, from the SDK's request
//     models): 422 {"detail": [{loc, msg, type}]} for a schema error (a bad enum,
//     a transfer without transfer_destination, a sip_uri destination without
//     transfer_type "sip_refer", the removed prompt.tools, a tool_ids entry that
//     is not the account's tool); 400 "Non-english Agents must use turbo or flash
//     v2_5" for a language other than English with an English-only TTS model
//     (eleven_turbo_v2, eleven_flash_v2, or no model_id: the default is
//     eleven_flash_v2). PATCH merges nested objects (RFC 7396, null removes) or
//     replaces the sections it names: Options.PatchMode, as the docs do not say.
//   - POST /v1/convai/tools, GET/PATCH/DELETE /v1/convai/tools/{id}: workspace
//     tools ({"tool_config": {type: client | webhook, ...}}); an agent lists
//     them in conversation_config.agent.prompt.tool_ids ("Agent tools
//     deprecation"). DELETE of a tool an agent uses is refused without force=true.
//   - GET /v1/convai/conversation/get-signed-url?agent_id= (also get_signed_url):
//     {"signed_url": "wss://host/v1/convai/conversation?agent_id=..&
//     conversation_signature=.."}, valid 15 minutes, reusable within them (Agent
//     authentication docs); the host is Options.SignedURLBase when set (a
//     regional deployment answers with its own host).
//   - GET /v1/convai/conversations/{id}: the conversation with its transcript;
//     "processing" once the socket is gone, then "done" with its analysis after
//     Options.AnalysisDelay. Token usage in metadata.charging.llm_usage comes in
//     the SDK's two buckets (LlmCategoryUsage: irreversible_generation,
//     initiated_generation); a reply cut by a barge-in counts in the second only.
//
// # The conversation websocket
//
// GET /v1/convai/conversation?agent_id=ID. A public agent needs no credential; a
// private one (platform_settings.auth.enable_auth) needs a live
// conversation_signature for that agent (403 otherwise); an xi-api-key header is
// ignored either way. 404 for an unknown agent, 503 while SetRefuse is on. The
// subprotocol "convai" is selected when offered. All frames are JSON text; the
// simulator sends only events of the AsyncAPI contract, and of those only the ones
// the agent's conversation.client_events lists (default: the AsyncAPI's list,
// which leaves out tool calls, tool responses and corrections); metadata and error
// are always sent.
//
//  1. The client may send conversation_initiation_client_data first; the
//     simulator waits for it up to 300 ms (and for SetConnectDelay), then sends
//     conversation_initiation_metadata from the agent's audio formats. Overrides
//     the agent's platform_settings.overrides do not allow get error
//     override_error and close 1008 (AsyncAPI ErrorType); an audio format it does
//     not speak, value_error and 1008.
//  2. Event ids are per response (README of the contract; the SDKs key barge-in on
//     them): each turn takes one id, shared by the caller's user_transcript, every
//     audio chunk of the reply, its agent_response, and a tool call made in it.
//     Pings count on their own.
//  3. The opening line is the override's first_message, else the agent's, with
//     {{variables}} filled; an empty override means the agent waits.
//  4. The agent's voice is a 440 Hz sine at -12 dBFS (RMS), 60 ms per character,
//     0.8 s to 4 s, sent in chunks of 110-470 ms: the first 0.5 s at once, the
//     rest at twice real time. Caller audio is {"user_audio_chunk": base64}; an
//     utterance is speech (10 ms frames above -40 dBFS) of at least 100 ms ended
//     by 500 ms of silence, on the audio's own clock. Each is a turn:
//     user_transcript "(caller spoke 1.4 s)", then the echo of the utterance with
//     agent_response "I heard you for 1.4 seconds." (the simulated LLM).
//  5. Barge-in: when an utterance starts while a reply plays at the caller's end
//     (by the wall clock and the caller's audio clock), interruption, no more of
//     that reply, and agent_response_correction with what was heard. The
//     interruption's id: Options.InterruptionIDs. ReuseID (default): a new id,
//     which the next reply carries too (elevenlabs-python issue 829: "the reply's
//     audio events ... carry an event_id equal to that interruption's event_id");
//     InterruptedID: the interrupted reply's id, the next reply a larger one (what
//     the Python SDK's `<=` drop assumes; the JS client drops only older ids).
//  6. user_message is a user turn and is answered ("You wrote: ..."; SDK: "User
//     text message"); contextual_update is recorded and never answered (SDK:
//     "non-interrupting content ... without directly prompting the agent");
//     user_activity, feedback, mcp_tool_approval_result and multimodal_message are
//     accepted. A message of no known type, bad JSON or base64: error
//     invalid_message and close 1008; a known type without a required field:
//     missing_fields and 1008 (AsyncAPI ErrorType and WebSocketCloseCode).
//  7. Tools (Tools docs; README of the contract): system tools (built_in_tools:
//     end_call, transfer_to_number, ...) run inside the service, and the client
//     sees at most agent_tool_response. Only tools of type "client" (from
//     prompt.tool_ids) are sent as client_tool_call; with expects_response the
//     agent waits up to response_timeout_secs (20 s when unset) for the
//     client_tool_result, then says "Done." or "Sorry, that did not work." (or,
//     with no result in time, "Sorry, that is taking too long.").
//  8. end_call (End call docs: "a farewell message ... before ending the call"):
//     the farewell, agent_tool_response(end_call) and close 1000, the last two
//     after all the farewell's audio is sent; the order of the tool response and
//     the farewell is Options.EndCallOrder (the docs do not say): ToolResponseFirst
//     (default) or FarewellFirst. Nothing in the default simulator calls it: a test
//     hook does (hooks.go).
//  9. ping {event_id, ping_ms} every Options.PingInterval (2 s); ping_ms is null
//     until a pong has come back, then the last round trip.
//  10. conversation.max_duration_seconds gives error max_duration_exceeded and
//     close 1000; no client frame for Options.ReceiveTimeout (60 s) gives
//     transport_receive_timeout and close 1002 (AsyncAPI ErrorType).
//
// # Test hooks
//
// See hooks.go: behaviour hooks a test turns on by name, and fault and
// inspection hooks (DropConversations, SetRefuse, SetConnectDelay,
// ExpireSignatures, Conversations, ...; /sim/ over HTTP). Options.Observe sees
// every websocket message either side sends, so tests can hold both to the
// AsyncAPI schemas (package contract).
//
// Each conversation socket runs two goroutines: the HTTP handler's, which reads
// frames and runs the utterance detector, and the agent's, which owns the
// conversation and writes every data frame (the ping ticker, the audio pacer and
// the tool timeout are timers in its loop). They talk through a bounded queue.
package elevenlabssim
