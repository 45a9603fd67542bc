package store

import "strconv"

// The key schema, in one place. Every key starts with "cxco:".
//
// Keys without a hash tag are single-key records, spread over a cluster:
//
//	cxco:seq:<entity>                 STRING  INCR sequence for ids (company, user, agent, delivery, ...)
//	cxco:key:<sha256(api key)>        STRING  "agency" | "company:<cid>" | "user:<cid>:<uid>" (keys are stored only as hashes)
//	cxco:companies                    ZSET    company ids (score = id)
//	cxco:agency                       STRING  JSON agency profile and the hash of the agency key
//	cxco:voices                       ZSET    voice ids; cxco:voice:<id> STRING JSON voice
//	cxco:wa:due                       ZSET    "<cid>:<pnid>" scored by the unix ms a WhatsApp verification is due
//	cxco:outbox:companies             SET     company ids whose outbox may hold undelivered events
//	cxco:live:calls                   HASH    conversation id -> JSON LiveCall, calls in progress on any node (live.go)
//	cxco:live                         PUB/SUB live call events and hang-up requests
//	cxco:probe:<node>                 STRING  written by /readyz to check that Redis takes writes (EX 10)
//
// Gateway nodes, one hash tag {nodes} (nodes.go: leases, live calls, the sweeper):
//
//	cxco:{nodes}:all                  ZSET    node id -> unix ms of its last heartbeat
//	cxco:{nodes}:lease:<node>         STRING  the node process's token, PX half the lease
//	cxco:{nodes}:live:<node>          ZSET    "<cid>:<conversation id>" of the node's calls in progress
//	cxco:{nodes}:sweep:<node>         STRING  lock of the node closing a lost node's calls
//
// The number pool, one hash tag {pool} so allocation is one atomic script:
//
//	cxco:{pool}:pn:<id>               HASH    number, country_code, provider_slug, status, company_id, agent_id, created_at, updated_at
//	cxco:{pool}:pn:bynum              HASH    E.164 number -> id
//	cxco:{pool}:pns                   ZSET    every number id
//	cxco:{pool}:avail:<CC>            ZSET    available number ids of one country (score = id: lowest first)
//	cxco:{pool}:company:<cid>         ZSET    ids assigned to a company
//
// The agency's trunks, one hash tag {trunks} (trunks.go):
//
//	cxco:{trunks}:ids                 ZSET    trunk ids;    cxco:{trunks}:trunk:<id> STRING JSON (password sealed)
//	cxco:{trunks}:byname              HASH    lower-case name -> trunk id
//	cxco:{trunks}:version             STRING  INCR on every change; nodes poll it and reload their trunks
//
// One company, hash tag {c<cid>}:
//
//	cxco:{c1}:company                 STRING  JSON company (with the hash of its key)
//	cxco:{c1}:users                   ZSET    user ids;     cxco:{c1}:user:<uid> STRING JSON
//	cxco:{c1}:users:email             HASH    lower-case email -> user id
//	cxco:{c1}:agents                  ZSET    agent ids;    cxco:{c1}:agent:<aid> STRING JSON
//	cxco:{c1}:agents:st:<status>      ZSET    agent ids by status
//	cxco:{c1}:agent:<aid>:lock        STRING  held while a publish is under way (PX)
//	cxco:{c1}:convs                   ZSET    conversation ids; cxco:{c1}:conv:<id> STRING JSON
//	cxco:{c1}:convs:agent:<aid>       ZSET    conversation ids of one agent
//	cxco:{c1}:convs:ch:<channel>      ZSET    conversation ids of one channel
//	cxco:{c1}:conv:<id>:tr            LIST    transcript entries, JSON, appended as they happen
//	cxco:{c1}:conv:<id>:sip           LIST    the call's SIP messages (SIPMessage JSON, secrets redacted),
//	                                          the first few hundred; expires (--sip-trace-keep)
//	cxco:{c1}:contacts                ZSET    contact ids;  cxco:{c1}:contact:<id> STRING JSON
//	cxco:{c1}:contacts:bynum          HASH    caller number -> contact id
//	cxco:{c1}:contact:<id>:convs      ZSET    conversation ids of one contact
//	cxco:{c1}:usage:<YYYY-MM-DD>      HASH    usage counters of one UTC day (see usage.go)
//	cxco:{c1}:webhooks                ZSET    webhook ids;  cxco:{c1}:webhook:<id> STRING JSON (secret sealed)
//	cxco:{c1}:cred:<slug>             STRING  JSON provider credential, sealed with AES-256-GCM
//	cxco:{c1}:pnwa:<pnid>             STRING  JSON WhatsApp state of a number assigned to this company
//	cxco:{c1}:outbox                  STREAM  events (id, type, event) recorded in the same step as the change;
//	                                          consumer group "webhooks" (one consumer per gateway node)
//	cxco:{c1}:dlv:<id>                HASH    one delivery of one event to one webhook (see deliveries.go)
//	cxco:{c1}:dlv:due                 ZSET    pending delivery ids by the unix ms of their next attempt or lease end
//	cxco:{c1}:dlv:parked:<wid>        ZSET    deliveries of a disabled webhook, waiting for it to be active again
//	cxco:{c1}:dlv:parkedhooks         SET     webhook ids that have parked deliveries
//	cxco:{c1}:webhook:<wid>:dlvs      ZSET    delivery ids of one webhook (score = id), for listing
//	cxco:{c1}:rl:<unix minute>        STRING  API requests in one minute (rate limit)
//	cxco:{c1}:batch:<bid>[:part]      HASH... batch calling: settings, counters, recipients, their states,
//	                                          due times and results, the working node's lease (batches.go)
//	cxco:{c1}:out:calls, :out:tat     ZSET, STRING  outbound call slots and calls-per-second spacing (outbound.go)
//	cxco:batches:active               ZSET    "<cid>:<bid>" of running batches, for the workers (batches.go)
const prefix = "cxco:"

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func keySeq(entity string) string  { return prefix + "seq:" + entity }
func keyAPIKey(hash string) string { return prefix + "key:" + hash }
func keyCompanies() string         { return prefix + "companies" }
func keyAgency() string            { return prefix + "agency" }
func keyVoices() string            { return prefix + "voices" }
func keyVoice(id int64) string     { return prefix + "voice:" + itoa(id) }
func keyWADue() string             { return prefix + "wa:due" }
func keyOutboxCompanies() string   { return prefix + "outbox:companies" }

const pool = prefix + "{pool}:"

func keyPN(id int64) string          { return pool + "pn:" + itoa(id) }
func keyPNByNum() string             { return pool + "pn:bynum" }
func keyPNs() string                 { return pool + "pns" }
func keyPNAvail(cc string) string    { return pool + "avail:" + cc }
func keyPNCompany(cid int64) string  { return pool + "company:" + itoa(cid) }
func company(cid int64) string       { return prefix + "{c" + itoa(cid) + "}:" }
func keyCompany(cid int64) string    { return company(cid) + "company" }
func keyUsers(cid int64) string      { return company(cid) + "users" }
func keyUser(cid, uid int64) string  { return company(cid) + "user:" + itoa(uid) }
func keyUserEmails(cid int64) string { return company(cid) + "users:email" }
func keyAgents(cid int64) string     { return company(cid) + "agents" }
func keyAgentsSt(cid int64, st string) string {
	return company(cid) + "agents:st:" + st
}
func keyAgent(cid, aid int64) string     { return company(cid) + "agent:" + itoa(aid) }
func keyAgentLock(cid, aid int64) string { return company(cid) + "agent:" + itoa(aid) + ":lock" }
func keyConvs(cid int64) string          { return company(cid) + "convs" }
func keyConvsAgent(cid, aid int64) string {
	return company(cid) + "convs:agent:" + itoa(aid)
}
func keyConvsChannel(cid int64, ch string) string { return company(cid) + "convs:ch:" + ch }
func keyConv(cid, id int64) string                { return company(cid) + "conv:" + itoa(id) }
func keyTranscript(cid, id int64) string          { return company(cid) + "conv:" + itoa(id) + ":tr" }
func keySIPTrace(cid, id int64) string            { return company(cid) + "conv:" + itoa(id) + ":sip" }
func keyContacts(cid int64) string                { return company(cid) + "contacts" }
func keyContact(cid, id int64) string             { return company(cid) + "contact:" + itoa(id) }
func keyContactsByNum(cid int64) string           { return company(cid) + "contacts:bynum" }
func keyContactConvs(cid, id int64) string        { return company(cid) + "contact:" + itoa(id) + ":convs" }
func keyUsage(cid int64, day string) string       { return company(cid) + "usage:" + day }
func keyWebhooks(cid int64) string                { return company(cid) + "webhooks" }
func keyWebhook(cid, id int64) string             { return company(cid) + "webhook:" + itoa(id) }
func keyCred(cid int64, slug string) string       { return company(cid) + "cred:" + slug }
func keyCredRing(cid int64, slug string) string   { return company(cid) + "credring:" + slug }
func keyPNWA(cid, pnid int64) string              { return company(cid) + "pnwa:" + itoa(pnid) }
func keyOutbox(cid int64) string                  { return company(cid) + "outbox" }
func keyRate(cid, minute int64) string            { return company(cid) + "rl:" + itoa(minute) }
