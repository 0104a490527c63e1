"""The OpenAPI document of /api/v1, generated from the blueprint's own routes, so it
cannot drift from them: each view's docstring is its summary, its ``roles`` the
users allowed."""

from __future__ import annotations

import re

from flask import Blueprint, current_app

import dmp

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")
_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["code", "message"],
                    }
                },
            }
        }
    },
}


def routes(bp: Blueprint) -> list[tuple[str, str, str]]:
    """(method, OpenAPI path, endpoint) of every route of ``bp``."""
    found = []
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint.startswith(bp.name + "."):
            path = _PARAM.sub(lambda m: "{" + m["name"] + "}", rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.append((method.lower(), path, rule.endpoint))
    return found


def openapi_document(bp: Blueprint) -> dict:
    paths: dict[str, dict] = {}
    for method, path, endpoint in routes(bp):
        view = current_app.view_functions[endpoint]
        doc = (view.__doc__ or "").strip()
        allowed = getattr(view, "roles", None)
        operation = {
            "operationId": endpoint.split(".", 1)[1],
            "summary": doc.splitlines()[0] if doc else endpoint,
            "parameters": [
                {
                    "name": m["name"],
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer" if m["conv"] == "int" else "string"},
                }
                for m in _PARAM.finditer(_rule(bp, endpoint))
            ],  # fmt: skip
            "responses": {"200": {"description": "OK"}, "default": _ERROR},
        }
        if allowed:
            operation["description"] = "Roles: " + ", ".join(allowed)
        else:
            operation["security"] = []
        if method in {"post", "put"}:
            operation["requestBody"] = {
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "multipart/form-data": {"schema": {"type": "object"}},
                }
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "dmp API", "version": dmp.__version__},
        "servers": [{"url": "/"}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _rule(bp: Blueprint, endpoint: str) -> str:
    return next(r.rule for r in current_app.url_map.iter_rules() if r.endpoint == endpoint)
