"""The routing table: public model ids → upstream deployments, from the operator's file
(GHOSTGPT_ROUTES_FILE, YAML or JSON) — never from a request.

    upstreams:
      local-vllm:
        base_url: http://127.0.0.1:8001/v1     # loopback and private addresses are normal
        api_key_env: VLLM_KEY                  # the key's environment variable (or api_key:)
        first_token_timeout: 30
      llama:
        base_url: http://10.0.0.5:8080/v1
        probe_url: http://10.0.0.5:8080/health # llama.cpp's own health check
      openai:
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY
      claude:
        kind: anthropic                        # openai (default) | anthropic | gemini | prompt
        base_url: https://api.anthropic.com/v1
        api_key_env: ANTHROPIC_API_KEY
        anthropic_version: "2023-06-01"
      google:
        kind: gemini
        base_url: https://generativelanguage.googleapis.com/v1beta
        api_key_env: GEMINI_API_KEY
    models:
      gpt-4o-mini:
        aliases: [mini]
        context_length: 128000
        vision: true                           # images go to it as images (else as OCR text)
        deployments:
          - {upstream: openai, model: gpt-4o-mini, priority: 0, weight: 1}
          - {upstream: local-vllm, model: qwen2.5-7b-instruct, priority: 1}
      claude-sonnet:
        deployments: [{upstream: claude, model: claude-sonnet-4-5}]

`tools: false` on a model turns function calling off (it is on wherever every
deployment's API has it; prompt-only upstreams do not).

`image_tokens` on a vision model: what its API bills for its largest image, reserved per
image before the upstream is called (defaults by API: openai 1445 — gpt-4o at high detail;
anthropic 1600; gemini 1290). Raise it for models that bill images at a multiple (gpt-4o-mini
bills up to 48169 tokens an image).

Link-local and cloud-metadata addresses (169.254.0.0/16, fe80::/10) are refused as
upstreams unless that upstream says `allow_link_local: true`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .base import ModelInfo
from .upstream import Deployment, RoutedModel, Upstream
from .wire import WIRES

# The most one image costs on each API (its largest image at full detail).
IMAGE_TOKENS = {"openai": 1445, "anthropic": 1600, "gemini": 1290, "prompt": 0}


def load_routes(path: str) -> list[RoutedModel]:
    """The routed models of a routing file. Raises ImproperlyConfigured with the reason."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        if path.endswith(".json"):
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{path}: not valid YAML/JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"{path}: expected a mapping with 'upstreams' and 'models'")
    upstreams = {name: _upstream(name, spec) for name, spec in (config.get("upstreams") or {}).items()}
    return [_model(model_id, spec, upstreams) for model_id, spec in (config.get("models") or {}).items()]


def _upstream(name: str, spec: Any) -> Upstream:
    if not isinstance(spec, dict) or not isinstance(spec.get("base_url"), str):
        raise ImproperlyConfigured(f"upstream {name!r}: 'base_url' is required")
    base_url = spec["base_url"].rstrip("/")
    kind = str(spec.get("kind") or "openai")
    if kind not in WIRES:
        raise ImproperlyConfigured(f"upstream {name!r}: kind must be one of {', '.join(WIRES)}, got {kind!r}")
    allow = bool(spec.get("allow_link_local"))
    check_upstream_url(base_url, allow_link_local=allow, name=name)
    probe_url = str(spec.get("probe_url") or "")
    if probe_url:
        check_upstream_url(probe_url, allow_link_local=allow, name=name)
    key = spec.get("api_key") or (os.environ.get(spec["api_key_env"], "") if spec.get("api_key_env") else "")
    options = {"anthropic_version": str(spec["anthropic_version"])} if spec.get("anthropic_version") else {}
    return Upstream(
        name=name,
        base_url=base_url,
        api_key=key,
        kind=kind,
        probe_url=probe_url,
        options=options,
        connect_timeout=float(spec.get("connect_timeout", 5)),
        first_token_timeout=float(spec.get("first_token_timeout", 60)),
        read_timeout=float(spec.get("read_timeout", 120)),
        answer_timeout=float(spec.get("answer_timeout", 600)),
        max_connections=int(spec.get("max_connections", 100)),
    )


def check_upstream_url(url: str, *, allow_link_local: bool, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"upstream {name!r}: base_url must be an http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise ImproperlyConfigured(f"upstream {name!r}: put credentials in api_key_env, not in the URL")
    if allow_link_local:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        return  # not resolvable now (DNS at start-up); connecting will fail clearly later
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%")[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if ip.is_link_local or (mapped is not None and mapped.is_link_local):
            raise ImproperlyConfigured(
                f"upstream {name!r}: {parts.hostname} is a link-local/metadata address ({ip}); "
                "set allow_link_local: true on this upstream if that is really meant"
            )


def _unsupported_tools(model_id: str, value: Any) -> str:
    if value in (None, ""):
        return ""
    if value not in ("refuse", "drop"):
        raise ImproperlyConfigured(f"model {model_id!r}: unsupported_tools must be 'refuse' or 'drop'")
    return str(value)


def _flag(model_id: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"model {model_id!r}: {name} must be true or false")
    return value


def _model(model_id: str, spec: Any, upstreams: dict[str, Upstream]) -> RoutedModel:
    if not isinstance(spec, dict) or not isinstance(spec.get("deployments"), list) or not spec["deployments"]:
        raise ImproperlyConfigured(f"model {model_id!r}: at least one deployment is required")
    deployments = []
    for i, item in enumerate(spec["deployments"]):
        upstream = upstreams.get(str(item.get("upstream"))) if isinstance(item, dict) else None
        if upstream is None:
            raise ImproperlyConfigured(f"model {model_id!r}, deployment {i}: unknown upstream")
        deployments.append(
            Deployment(
                upstream=upstream,
                model=str(item.get("model") or model_id),
                priority=int(item.get("priority", 0)),
                weight=float(item.get("weight", 1)),
            )
        )
    default_image_tokens = max(IMAGE_TOKENS.get(d.upstream.kind, 0) for d in deployments)
    info = ModelInfo(
        id=model_id,
        owned_by=str(spec.get("owned_by", "ghostgpt")),
        created=int(spec.get("created", time.time())),
        context_length=int(spec.get("context_length", 8192)),
        image_tokens=max(int(spec.get("image_tokens", default_image_tokens)), 0),
        unsupported_tools=_unsupported_tools(model_id, spec.get("unsupported_tools")),
        source="local" if spec.get("local") else "routed",
        response_cache=_flag(model_id, "response_cache", spec.get("response_cache", False)),
    )
    return RoutedModel(
        info,
        deployments,
        aliases=tuple(str(a) for a in spec.get("aliases") or ()),
        tools=None if spec.get("tools") is None else bool(spec["tools"]),
        vision=bool(spec.get("vision")),
        json_schema=bool(spec.get("json_schema")),
        embeddings=bool(spec.get("embeddings")),
    )
