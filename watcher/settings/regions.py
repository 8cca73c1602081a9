"""The regions DTS serves, to catch a misspelled region id before it silently reads an
empty listing (`cn-hangzou`: "0 jobs visible", and nothing ever happens).

From Alibaba Cloud's "Supported regions" page for DTS (public cloud, then Finance and Gov
Cloud), as of 2026-11. A region DTS opens later is accepted by naming it in
`dts.allow_regions` (`DTS_WATCHER_DTS__ALLOW_REGIONS`); an unknown region is a warning,
never an error: this list may be older than DTS.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

DTS_REGIONS = frozenset(
    {
        "cn-hangzhou",
        "cn-shanghai",
        "cn-qingdao",
        "cn-beijing",
        "cn-zhangjiakou",
        "cn-huhehaote",
        "cn-wulanchabu",
        "cn-shenzhen",
        "cn-heyuan",
        "cn-guangzhou",
        "cn-chengdu",
        "cn-hongkong",
        "ap-southeast-1",
        "ap-southeast-3",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ap-northeast-1",
        "ap-northeast-2",
        "us-west-1",
        "us-east-1",
        "eu-central-1",
        "eu-west-1",
        "me-central-1",
        "me-east-1",
        "cn-hangzhou-finance",
        "cn-shanghai-finance-1",
        "cn-shenzhen-finance-1",
        "cn-beijing-finance-1",
        "cn-north-2-gov-1",
    }
)


def unknown_region_warnings(regions: Iterable[str], allowed: Iterable[str] = ()) -> list[str]:
    """One line per region that neither DTS's list nor `allowed` names, with a guess."""
    known = DTS_REGIONS | set(allowed)
    lines = []
    for region in regions:
        if region in known:
            continue
        guess = difflib.get_close_matches(region, sorted(DTS_REGIONS), n=1, cutoff=0.75)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        lines.append(
            f"region {region!r} is not one DTS serves{hint}; if it is new, add it to "
            "dts.allow_regions (DTS_WATCHER_DTS__ALLOW_REGIONS)"
        )
    return lines
