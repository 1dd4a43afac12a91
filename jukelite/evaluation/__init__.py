"""Evaluation of trained bundles against the procedural demo songs.

`evaluate_conditioning` measures whether generated songs carry the artist, genre and lyrics they
were asked for (`jukelite eval conditioning`); the scorers it trains live in `features`,
`classifiers` and `recognizer`.
"""

from jukelite.evaluation.conditioning import (
    FULL,
    QUICK,
    ConditioningEvalError,
    EvalSettings,
    evaluate_conditioning,
    format_table,
)
from jukelite.evaluation.recognizer import character_error_rate

__all__ = [
    "FULL",
    "QUICK",
    "ConditioningEvalError",
    "EvalSettings",
    "character_error_rate",
    "evaluate_conditioning",
    "format_table",
]
