"""The settlement's values (model.py) behave the same compiled, as extension
types with a C struct member per field (model.pxd), and interpreted, as
frozen slotted dataclasses: the same repr, hash, equality, pickle, fields,
defaults and refusal of a change, for any field values. The interpreted
module is model.py loaded from its source beside the module the suite runs
(compiled, unless MEDSETTLE_PURE=1)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import pickle
import sys
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsettle.ledger.reference.models import Category
from medsettle.ledger.settlement import model as running

PROPS = settings(max_examples=150, deadline=None)
INTERPRETED_NAME = "medsettle_values_interpreted"


def _interpreted() -> ModuleType:
    """model.py run from its source, under a name of its own (registered, so its values pickle)."""
    if INTERPRETED_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(INTERPRETED_NAME, running.__file__.rpartition("/")[0] + "/model.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[INTERPRETED_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[INTERPRETED_NAME]


interpreted = _interpreted()
VALUE_CLASSES = ["FeeLine", "Bill", "PersonState", "Accumulators", "LineSplit", "Split", "Settlement"]
FROZEN = [name for name in VALUE_CLASSES if name != "Accumulators"]

texts = st.text(max_size=8)
ints = st.integers(-(10**15), 10**15)
values = st.one_of(texts, ints, st.none(), st.sampled_from(Category), st.booleans())


def _fee_lines(module: ModuleType, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple(module.FeeLine(*row) for row in rows)


def _line_splits(module: ModuleType, rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    return tuple(module.LineSplit(*row) for row in rows)


def _pair(name: str, args: list[Any], nested: list[tuple[Any, ...]] | None = None) -> tuple[Any, Any]:
    """The value of class `name` built of the same arguments in each module;
    nested: rows of its fee lines (Bill) or line splits (Split), built in each module too."""
    built = []
    for module in (running, interpreted):
        these = list(args)
        if name == "Bill" and nested is not None:
            these[6] = _fee_lines(module, nested)
        if name == "Split" and nested is not None:
            these[13] = _line_splits(module, nested)
        built.append(getattr(module, name)(*these))
    return built[0], built[1]


def _arity(name: str) -> int:
    return len(dataclasses.fields(getattr(running, name)))


@pytest.mark.parametrize("name", VALUE_CLASSES)
def test_the_fields_and_their_defaults_are_the_same(name: str) -> None:
    ours, theirs = dataclasses.fields(getattr(running, name)), dataclasses.fields(getattr(interpreted, name))
    assert [(f.name, f.default, f.repr, f.compare) for f in ours] == [(f.name, f.default, f.repr, f.compare) for f in theirs]


@PROPS
@given(st.sampled_from(VALUE_CLASSES), st.data())
def test_repr_equality_hash_and_pickle_are_the_same(name: str, data: st.DataObject) -> None:
    args = data.draw(st.lists(values, min_size=_arity(name), max_size=_arity(name)))
    other = data.draw(st.lists(values, min_size=_arity(name), max_size=_arity(name)))
    ours, theirs = _pair(name, args)
    ours_other, theirs_other = _pair(name, other)
    assert repr(ours) == repr(theirs)
    assert (ours == ours_other) == (theirs == theirs_other)
    assert ours == _pair(name, args)[0] and theirs == _pair(name, args)[1]
    assert ours != theirs  # a value of the other mode's class is another class
    if name in FROZEN:
        assert hash(ours) == hash(theirs)
    else:
        with pytest.raises(TypeError):
            hash(ours)
        with pytest.raises(TypeError):
            hash(theirs)
    for value in (ours, theirs):
        back = pickle.loads(pickle.dumps(value))
        assert type(back) is type(value) and back == value
    if name in FROZEN:  # each pickles as its constructor and arguments: either mode reads the other's pickle
        assert ours.__reduce__() == (type(ours), tuple(args)) and theirs.__reduce__() == (type(theirs), tuple(args))


@pytest.mark.parametrize("name", FROZEN)
def test_a_change_is_refused_alike(name: str) -> None:
    for value in _pair(name, [0] * _arity(name)):
        field = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{field}'"):
            setattr(value, field, 1)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{field}'"):
            delattr(value, field)
        # a name that is no field: refused both ways (interpreted, the standard library's frozen
        # __setattr__ of a slotted dataclass raises TypeError from its super() call)
        with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
            setattr(value, "not_a_field", 1)


def test_accumulators_change_alike() -> None:
    for module in (running, interpreted):
        accumulators = module.Accumulators(1, 2, 3)
        accumulators.acct_balc_fen = 5
        assert accumulators == module.Accumulators(1, 2, 5) and accumulators.copy() == accumulators
        with pytest.raises(AttributeError):
            accumulators.not_a_field = 1


fee_line_rows = st.lists(st.tuples(texts, texts, ints, ints), max_size=3)
line_split_rows = st.lists(st.tuples(texts, st.sampled_from(Category), ints, ints, ints, ints, ints), max_size=3)


@PROPS
@given(st.lists(values, min_size=18, max_size=18), fee_line_rows)
def test_a_bill_and_its_fingerprint_are_the_same(args: list[Any], rows: list[tuple[Any, ...]]) -> None:
    args[5], args[7] = running.VisitType.OUTPATIENT, True  # what fingerprint takes int() of
    args[16] = None  # no prescription (fingerprint calls its own)
    ours, theirs = _pair("Bill", args, rows)
    assert repr(ours) == repr(theirs) and hash(ours) == hash(theirs)
    assert ours.fingerprint() == theirs.fingerprint()
    back = pickle.loads(pickle.dumps(ours))
    assert back == ours and all(type(line) is running.FeeLine for line in back.fee_lines)
    assert dataclasses.replace(ours, psn_no="P1").psn_no == dataclasses.replace(theirs, psn_no="P1").psn_no == "P1"


@PROPS
@given(st.lists(ints, min_size=13, max_size=13), line_split_rows, st.integers(0, 10**9))
def test_a_split_its_identities_and_its_negation_are_the_same(amounts: list[int], rows: list[tuple[Any, ...]],
                                                              balc_fen: int) -> None:
    ours, theirs = _pair("Split", [*amounts, ()], rows)
    assert ours.identity_errors() == theirs.identity_errors()
    assert ours.amounts() == theirs.amounts()
    assert repr(ours.negated(balc_fen)) == repr(theirs.negated(balc_fen))
    at = dt.datetime(2026, 12, 6, 18, tzinfo=dt.timezone.utc)
    settlement_args = ["S1", "M1", "H1", "P1", 310, "440100", "440300", running.ClrType.OUTPATIENT,
                       running.PayLoc.IN_PROVINCE, running.SettlementKind.SETTLE, "", at, "2026-12"]
    settled = running.Settlement(*settlement_args, ours), interpreted.Settlement(*settlement_args, theirs)
    assert repr(settled[0]) == repr(settled[1]) and hash(settled[0]) == hash(settled[1])
    assert repr(settled[0].with_id("S2")) == repr(settled[1].with_id("S2"))
