// What the API accepts, read once from its own OpenAPI document (languages,
// audio formats, webhook events), so the forms never drift from the server.
import { get } from './api.js';

let doc = null;

async function schemas() {
  if (!doc) {
    try { doc = await get('/api/openapi.json'); } catch { doc = {}; }
  }
  return (doc.components && doc.components.schemas) || {};
}

function enumAt(obj, ...path) {
  for (const p of path) obj = obj && obj[p];
  return Array.isArray(obj) ? obj : [];
}

export async function languages() {
  return enumAt(await schemas(), 'AgentCreate', 'properties', 'language', 'enum');
}

export async function audioFormats() {
  const v = enumAt(await schemas(), 'AgentCreate', 'properties', 'config', 'properties', 'audio_format', 'enum');
  return v.length ? v : ['ulaw_8000', 'pcm_16000'];
}

export async function eventTypes() {
  return enumAt(await schemas(), 'WebhookCreate', 'properties', 'events', 'items', 'enum');
}

// agentProviders are the voice-AI providers an agent may choose, when the API
// lets it choose (AgentCreate.provider); none: the voice's provider runs it.
export async function agentProviders() {
  return enumAt(await schemas(), 'AgentCreate', 'properties', 'provider', 'enum');
}

// providerName is how the dashboard names a voice-AI provider's slug.
export function providerName(slug) {
  return { elevenlabs: 'ElevenLabs Agents', openai: 'OpenAI Realtime', mediastream: 'Your own bot (Media Streams)' }[slug] || slug;
}
