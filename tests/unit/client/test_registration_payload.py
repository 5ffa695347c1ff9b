"""The Register/Update object list the data model hands the engine (Core §6.2.1)."""

from __future__ import annotations

import re
from pathlib import Path as FsPath

from aiolwm2m.client.config import ClientConfig, ServerAccount
from aiolwm2m.client.operations import default_objects
from aiolwm2m.lwm2m import linkformat
from aiolwm2m.lwm2m.ddf import builtin_definition

DOCS = FsPath(__file__).resolve().parents[3] / "docs"
CONFIG = ClientConfig("ep", (ServerAccount("coap://127.0.0.1:5683", 1),))


def test_as_1_1_the_list_opens_with_the_supported_content_formats() -> None:
    payload = default_objects(CONFIG).registration_payload("1.1")
    root, *objects = linkformat.decode(payload)
    assert payload.startswith(b'</>;rt="oma.lwm2m";ct="60 110 112 11542 11543",')
    assert linkformat.parse_registration([root, *objects]).content_formats == (
        60,
        110,
        112,
        11542,
        11543,
    )
    assert [link.target for link in objects] == ["/1", "/1/0", "/3", "/3/0", "/4", "/4/0"]


def test_as_1_0_there_is_no_root_link() -> None:
    payload = default_objects(CONFIG).registration_payload("1.0")
    assert payload.startswith(b"</1>;ver=1.1,</1/0>,")
    assert all(link.target != "/" for link in linkformat.decode(payload))


def test_object_versions_in_the_docs_are_those_of_the_shipped_definitions() -> None:
    """docs/bootstrap.md shows a Bootstrap-Discover answer: its ``ver`` must be real."""
    text = (DOCS / "bootstrap.md").read_text(encoding="utf-8")
    shown = dict(re.findall(r"</(\d+)>;ver=([0-9.]+)", text))
    assert shown, "the example answer is gone from docs/bootstrap.md"
    for object_id, version in shown.items():
        assert builtin_definition(f"{object_id}.xml").version == version, object_id
    payload = default_objects(CONFIG).registration_payload("1.1").decode()
    for object_id, version in shown.items():
        assert f"</{object_id}>;ver={version}" in payload
