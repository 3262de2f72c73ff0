"""waterz scoring functions by name, and a check of a user's C++ scoring type, without waterz.

The named shortcuts (funkelab lsd's names) are the variants waterz 0.10 ships prebuilt; any
other C++ scoring type is compiled at run time (needs a C++ compiler and the boost headers),
so a typo would only surface as a compile error after the affinity net trained. The config
check therefore accepts a C++ type only if it is built from waterz's own templates.
"""

from __future__ import annotations

import re

# waterz._codegen.QUANTILES: the quantiles compiled into waterz's wheels
QUANTILES = (10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95)

MERGE_FUNCTIONS = {
    "mean": "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>",
    **{
        f"hist_quant_{q}": f"OneMinus<HistogramQuantileAffinity<RegionGraphType, {q}, ScoreValue, 256, false>>"
        for q in QUANTILES
    },
}

# template and type names of waterz/backend/MergeFunctions.hpp and Operators.hpp
WATERZ_NAMES = frozenset(
    {
        "OneMinus",
        "Invert",
        "Square",
        "Step",
        "Add",
        "Subtract",
        "Multiply",
        "Divide",
        "MinSize",
        "MaxSize",
        "ContactArea",
        "MeanAffinity",
        "MinAffinity",
        "MaxAffinity",
        "HistogramQuantileAffinity",
        "QuantileAffinity",
        "MeanMaxKAffinity",
        "EdgeStatisticValue",
        "MeanAffinityProvider",
        "MinAffinityProvider",
        "MaxAffinityProvider",
        "HistogramQuantileProvider",
        "VectorQuantileProvider",
        "Random",
        "Constant",
        "RegionGraphType",
        "ScoreValue",
        "true",
        "false",
    }
)


def scoring_function(name: str) -> str:
    """The C++ scoring type of a named shortcut, or the given C++ type itself."""
    return MERGE_FUNCTIONS.get(name, name)


def check_merge_function(value: str) -> str | None:
    """None if `value` is a shortcut or a well-formed waterz C++ scoring type, else what is wrong."""
    if value in MERGE_FUNCTIONS:
        return None
    if "<" not in value:
        return "is neither a named scoring function nor a waterz C++ scoring type"
    tokens = re.findall(r"[A-Za-z_]\w*|\d+|[<>,]|\S", value)
    depth = 0
    for tok in tokens:
        if tok == "<":
            depth += 1
        elif tok == ">":
            depth -= 1
            if depth < 0:
                return "has unbalanced angle brackets"
        elif tok == "," or tok.isdigit():
            continue
        elif re.fullmatch(r"[A-Za-z_]\w*", tok):
            if tok not in WATERZ_NAMES:
                return f"uses {tok!r}, which is not a waterz scoring template"
        else:
            return f"contains {tok!r}, which no C++ scoring type contains"
    return "has unbalanced angle brackets" if depth else None
