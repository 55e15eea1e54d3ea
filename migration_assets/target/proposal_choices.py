"""Close choice labels -> option values of an EXISTING Dataverse choice column (pure).

A Close "choices" field proposed onto a column that already exists (e.g. Industry -> lead.industrycode)
must be written with that column's own option values (1 Accounting, 2 Agriculture, ...), never with the
numbers this project gives the options of the columns it creates (option_value_prefix * 10000 + i), which
do not exist on someone else's column. Labels are matched case-insensitively after trimming; a Close
choice without exactly one matching option is "unmatched" and the caller decides what to propose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migration_assets.mapping.normalise import fold_label


def option_labels(attribute: Mapping[str, Any]) -> dict[str, list[int]]:
    """Folded option label -> option values of an attribute given as
    {"Options": [{"Value": 1, "Label": "Accounting"}, ...]} (labels may be missing: those are skipped)."""
    out: dict[str, list[int]] = {}
    for opt in attribute.get("Options") or ():
        label, value = opt.get("Label"), opt.get("Value")
        if label is None or value is None or not str(label).strip():
            continue
        out.setdefault(fold_label(str(label)), []).append(int(value))
    return out


@dataclass(frozen=True)
class ChoiceMatch:
    values: tuple[tuple[str, int], ...]  # Close label -> option value, for the labels that matched
    unmatched: tuple[str, ...]  # Close labels with no option, or with several options of that label

    @property
    def complete(self) -> bool:
        return not self.unmatched

    def describe(self, target: str) -> str:
        """Why the column cannot take every choice, for the proposal's `reason`."""
        return f"{target} has no single option labelled {', '.join(repr(u) for u in self.unmatched)}"


def match_choices(choices: Sequence[str], attribute: Mapping[str, Any]) -> ChoiceMatch:
    """Map every Close choice label to the option of `attribute` with the same label."""
    labels = option_labels(attribute)
    values: list[tuple[str, int]] = []
    unmatched: list[str] = []
    for choice in choices:
        found = labels.get(fold_label(choice), [])
        # Two options with one label: either value could be meant, so no guess is made.
        if len(set(found)) == 1:
            values.append((choice, found[0]))
        else:
            unmatched.append(choice)
    return ChoiceMatch(tuple(values), tuple(unmatched))
