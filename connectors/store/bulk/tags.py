"""`tags_add`, `tags_remove`, `tags_set`: a record's tags; the before/after images are its sorted tags
(a rollback gives a record exactly the tags of its before-image)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.store.bulk.base import Evaluation, Item, Operation, evaluate_each
from connectors.store.bulk.params import str_list
from connectors.store.bulk.records import load_records, load_tags, write_tags

# (record id, tag) pairs to add, and to remove
TagChanges = tuple[list[tuple[uuid.UUID, str]], list[tuple[uuid.UUID, str]]]


def _diff(entity_id: uuid.UUID, have: list[str], new: list[str]) -> TagChanges:
    return [(entity_id, t) for t in new if t not in have], [(entity_id, t) for t in have if t not in new]


class Tags(Operation):
    """Gives each record found the tags `new_tags` decides."""

    @classmethod
    def validate(cls, entity_type: str, params: dict[str, Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"tags": str_list(params, "tags", allow_empty=cls is TagsSet)}

    @staticmethod
    def new_tags(have: list[str], wanted: list[str]) -> list[str]:
        raise NotImplementedError

    def evaluate(self, items: Sequence[Item]) -> Evaluation:
        b = self.batch
        wanted = b.params["tags"]
        records = load_records(b.conn, b.table, b.account_id, [i.entity_id for i in items])
        current = load_tags(b.conn, b.account_id, b.entity_type, list(records))
        outcomes, changed = evaluate_each(
            b,
            items,
            records,
            lambda entity_id, _: {"tags": current[entity_id]},
            lambda before: {"tags": self.new_tags(before["tags"], wanted)},
        )
        to_add: list[tuple[uuid.UUID, str]] = []
        to_remove: list[tuple[uuid.UUID, str]] = []
        for o in changed:
            add, remove = _diff(o.entity_id, o.before["tags"], o.after["tags"])
            to_add += add
            to_remove += remove
        return Evaluation(outcomes, (to_add, to_remove))

    def apply(self, evaluation: Evaluation) -> None:
        b = self.batch
        write_tags(b.conn, b.account_id, b.entity_type, b.now, *evaluation.changes)


class TagsAdd(Tags):
    name = "tags_add"

    @staticmethod
    def new_tags(have: list[str], wanted: list[str]) -> list[str]:
        return sorted(set(have) | set(wanted))


class TagsRemove(Tags):
    name = "tags_remove"

    @staticmethod
    def new_tags(have: list[str], wanted: list[str]) -> list[str]:
        return sorted(set(have) - set(wanted))


class TagsSet(Tags):
    name = "tags_set"

    @staticmethod
    def new_tags(have: list[str], wanted: list[str]) -> list[str]:
        return sorted(set(wanted))
