"""The operation catalog: every operation an entity offers has its class and its params check, and says whether a rollback can undo it."""

from __future__ import annotations

import pytest

from connectors.store import bulk, registry
from connectors.store.bulk import catalog
from connectors.store.bulk.delete import HardDelete, SoftDelete


def test_every_operation_an_entity_offers_has_a_class_of_that_name() -> None:
    offered = {op for entity in registry.ENTITIES.values() for op in entity.operations}
    assert offered <= set(catalog.CATALOG)
    assert all(cls.name == name for name, cls in catalog.CATALOG.items())


@pytest.mark.parametrize(
    ("operation", "params", "rollbackable"),
    [
        pytest.param("status_update", {"status": "rejected"}, True, id="status"),
        pytest.param("tags_set", {"tags": []}, True, id="tags"),
        pytest.param("recollection", {}, True, id="recollection"),
        pytest.param("create", {"template": "offer", "status": "draft", "terms": {}}, True, id="contract-create"),
        pytest.param("delete", {"hard": False}, True, id="soft-delete"),
        pytest.param("delete", {"hard": True}, False, id="hard-delete"),
        pytest.param("trigger_automations", {"automations": ["a"]}, False, id="automations"),
        pytest.param(bulk.ROLLBACK, {"rollback_of": "x"}, False, id="rollback"),
    ],
)
def test_an_operation_can_be_rolled_back_unless_its_class_says_it_is_not_reversible(
    operation, params, rollbackable
) -> None:
    assert bulk.can_roll_back(operation, params) is rollbackable


def test_delete_runs_as_a_soft_or_a_hard_delete_by_its_params() -> None:
    assert catalog.operation_class("delete", {"hard": False}) is SoftDelete
    assert catalog.operation_class("delete", {"hard": True}) is HardDelete


@pytest.mark.parametrize(
    ("entity_type", "operation", "params", "field"),
    [
        pytest.param("applications", "teleport", {}, "operation", id="unknown-operation"),
        pytest.param("applications", "status_update", {"status": ""}, "status", id="empty-status"),
        pytest.param("applications", "delete", {"hard": "yes"}, "hard", id="hard-not-bool"),
        pytest.param("applications", "tags_add", {"tags": []}, "tags", id="no-tags"),
        pytest.param("applications", "field_update", {"fields": {"stage": "x"}}, "fields", id="field-not-updatable"),
        pytest.param("contracts", "create", {"template": "t", "terms": []}, "terms", id="terms-not-object"),
    ],
)
def test_validate_params_names_the_offending_field(entity_type, operation, params, field) -> None:
    with pytest.raises(bulk.ParamsError) as caught:
        bulk.validate_params(entity_type, operation, params)
    assert caught.value.details["field"] == field
