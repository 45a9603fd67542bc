// Package bridge connects one answered call to its voice-AI provider and records
// what happened: audio both ways, barge-in, transcript, tools, usage.
package bridge
