"""The ids of the Responses API's items as streamfn makes them: `<kind>_<request id>_<n>`
(`msg_`, `rs_`, `fc_`, `ctc_`), so that an item's id names the stored response it is in
(`resp_<request id>`). The dialect makes them; a provider that passes requests through to an
upstream serving the API itself tells them from the upstream's own (`rs_68c1...`, with no
second underscore) and strips them."""

from __future__ import annotations

PREFIXES = ("msg", "rs", "fc", "ctc")


def response_of(item_id: str) -> str | None:
    """The id of the response whose output holds item `item_id`, if it is one of ours."""
    prefix, _, rest = item_id.partition("_")
    rid, _, n = rest.rpartition("_")
    if prefix not in PREFIXES or not rid or not n.isdigit():
        return None
    return f"resp_{rid}"
