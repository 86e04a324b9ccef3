"""The committed OpenAPI document states the REST contract the seed's clients rely on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.unit.test_proto_contract import SEED_PATHS

DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "gen" / "openapi" / "openapi.json").read_text()
)
SCHEMAS = DOCUMENT["components"]["schemas"]


def camel(template: str) -> str:
    return template.replace("{device_id}", "{deviceId}").replace("{user_id}", "{userId}")


def test_every_seed_path_is_documented_with_its_verb() -> None:
    for (verb, template), _rpc in SEED_PATHS.items():
        assert verb.lower() in DOCUMENT["paths"][camel(template)], (verb, template)


def test_json_names_are_camel_case_and_enums_travel_by_name() -> None:
    check = SCHEMAS["CheckUpdateResponse"]
    assert {"updateAvailable", "latestVersion"} <= set(check["required"])
    assert SCHEMAS["LoginResponse"]["properties"]["token"] == {
        "type": "string",
        "description": 'The bearer token: send it as "Authorization: Bearer <token>".',
    }
    assert SCHEMAS["LedState"]["enum"] == ["LED_STATE_UNSPECIFIED", "ON", "OFF"]


def test_errors_and_bearer_auth_are_described() -> None:
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    login = DOCUMENT["paths"]["/api/auth/login"]["post"]
    assert login["security"] == []
    assert set(SCHEMAS["Status"]["required"]) == {"code", "message"}
    for status in ("400", "401", "403", "404", "409", "429", "503"):
        assert login["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Status"
        }
