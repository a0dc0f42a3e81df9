"""Dial-in agents: model workers behind NAT connect out to GhostGPT over a WebSocket
(`/ws/agent`, an agent token), heartbeat, take jobs and stream tokens back; `AgentPool`
is the Backend that sends each request to the least busy live agent.

The wire between server and agent (JSON text frames):
  server → agent  {"type": "welcome", "id", "heartbeat_seconds"}
                  {"type": "job", "job", "request": {"model", "messages", "max_tokens",
                   "temperature", "top_p", "stop", "seed"}}
                  {"type": "cancel", "job"}
  agent → server  {"type": "hello", "name", "models", "parallel"}
                  {"type": "heartbeat"}
                  {"type": "accepted", "job", "prompt_tokens"?}
                  {"type": "delta", "job", "text"}
                  {"type": "done", "job", "finish_reason", "usage"?: {"prompt_tokens", "completion_tokens"}}
                  {"type": "error", "job", "message", "retry"?}
"""
