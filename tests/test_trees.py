"""The YAML tree loader: structure, ticking, includes, and file:line errors for bad trees."""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import py_trees
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from py_trees.common import Status

from bt_sorter.behaviours.base import REGISTRY, Context, Leaf, Param
from bt_sorter.blackboard import Blackboard
from bt_sorter.clock import LineClock
from bt_sorter.config import load_config
from bt_sorter.record import Record
from bt_sorter.trees.build import MAX_DEPTH, MAX_NODES, load_tree
from bt_sorter.trees.cli import node_catalogue
from bt_sorter.trees.vocabulary import KINDS, Guard
from bt_sorter.yamlio import SpecError

REPO = Path(__file__).resolve().parent.parent


class ProbeSucceed(Leaf):
    """SUCCESS on every tick; counts its ticks."""

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name, ctx, **values)
        self.ticks = 0

    def update(self) -> Status:
        self.ticks += 1
        return Status.SUCCESS


class ProbeFlaky(Leaf):
    """FAILURE for the first ``failures`` ticks, then SUCCESS."""

    params: ClassVar[tuple[Param, ...]] = (Param("failures", int, "ticks that fail first"),)

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name, ctx, **values)
        self.ticks = 0

    def update(self) -> Status:
        self.ticks += 1
        return Status.FAILURE if self.ticks <= self.failures else Status.SUCCESS


class ProbeFlag(Leaf):
    """SUCCESS while ``ctx.options[key]`` is true, else FAILURE."""

    params: ClassVar[tuple[Param, ...]] = (Param("key", str, "option to read"),)

    def update(self) -> Status:
        return Status.SUCCESS if self.ctx.options.get(self.key) else Status.FAILURE


class ProbeHold(Leaf):
    """RUNNING forever; remembers how it was stopped."""

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name, ctx, **values)
        self.stopped_with: Status | None = None

    def update(self) -> Status:
        return Status.RUNNING

    def terminate(self, new_status: Status) -> None:
        if new_status != Status.RUNNING:
            self.stopped_with = new_status


class ProbeRod(Leaf):
    """Declares typed parameters and checks a range itself."""

    params: ClassVar[tuple[Param, ...]] = (
        Param("rod", int, "rod 2..4"),
        Param("seconds", float, "a duration", default=1.0),
        Param("mode", Literal["fast", "slow"], "a choice", default="fast"),
    )

    def __init__(self, name: str, ctx: Context, **values: Any) -> None:
        super().__init__(name, ctx, **values)
        if not 2 <= self.rod <= 4:
            raise ValueError(f"rod must be 2..4, got {self.rod}")

    def update(self) -> Status:
        return Status.SUCCESS


PROBES = (ProbeSucceed, ProbeFlaky, ProbeFlag, ProbeHold, ProbeRod)


@pytest.fixture(scope="module", autouse=True)
def probes() -> Iterator[None]:
    """Register the probe leaves for this module and remove them afterwards."""
    for cls in PROBES:
        REGISTRY[cls.__name__] = cls
    yield
    for cls in PROBES:
        REGISTRY.pop(cls.__name__, None)


def make_ctx(speed: float = 1.0) -> Context:
    return Context(
        bb=Blackboard(), config=load_config(), clock=LineClock(speed), record=Record(None)
    )


@pytest.fixture
def ctx() -> Context:
    return make_ctx()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path: Path, ctx: Context) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_tree(path, ctx)
    return info.value


def tick_until_done(root: py_trees.behaviour.Behaviour, limit: int = 100) -> int:
    for n in range(1, limit + 1):
        root.tick_once()
        if root.status != Status.RUNNING:
            return n
    raise AssertionError(f"tree still running after {limit} ticks")


VALID = """
# comments allowed anywhere
root:
  sequence: sort the line        # kind -> name
  memory: true
  children:
    - ProbeSucceed: start belt
    - repeat: item after item
      num_success: 3
      child:
        sequence: one item
        memory: true
        children:
          - ProbeSucceed: feed item
          - retry: picture, up to 3 tries
            num_failures: 3
            child:
              ProbeFlaky: wait for picture
              failures: 2
          - include: push.yaml
            name: push for label
"""

PUSH = """
root:
  selector: push the rod
  children:
    - ProbeRod: push rod
      rod: 3
      seconds: 2
"""


def test_valid_tree_builds_the_py_trees_structure_the_file_describes(
    tmp_path: Path, ctx: Context
) -> None:
    write(tmp_path, "push.yaml", PUSH)
    root = load_tree(write(tmp_path, "sort.yaml", VALID), ctx)

    assert isinstance(root, py_trees.composites.Sequence) and root.memory is True
    assert root.name == "sort the line"
    start, repeat = root.children
    assert isinstance(start, ProbeSucceed) and start.name == "start belt"
    assert isinstance(repeat, py_trees.decorators.Repeat) and repeat.num_success == 3
    item = repeat.decorated
    assert [c.name for c in item.children] == [
        "feed item",
        "picture, up to 3 tries",
        "push for label",
    ]
    retry, push = item.children[1], item.children[2]
    assert isinstance(retry, py_trees.decorators.Retry) and retry.num_failures == 3
    assert isinstance(push, py_trees.composites.Selector) and push.memory is False
    rod = push.children[0]
    assert isinstance(rod, ProbeRod)
    assert (rod.rod, rod.seconds, rod.mode) == (3, 2.0, "fast")
    assert isinstance(rod.seconds, float)


def test_valid_tree_ticks_to_success_retrying_the_flaky_leaf(tmp_path: Path, ctx: Context) -> None:
    write(tmp_path, "push.yaml", PUSH)
    root = load_tree(write(tmp_path, "sort.yaml", VALID), ctx)
    ticks = tick_until_done(root)
    assert root.status == Status.SUCCESS
    flaky = next(b for b in root.iterate() if isinstance(b, ProbeFlaky))
    feed = next(b for b in root.iterate() if b.name == "feed item")
    # two failures retried once, then three items: the feeder ran once per item
    assert flaky.ticks == 2 + 3
    assert feed.ticks == 3
    assert ticks == 3 + 2  # each retried failure costs a tick (RUNNING)


def test_parallel_policies_and_status_converters_build(tmp_path: Path, ctx: Context) -> None:
    path = write(
        tmp_path,
        "par.yaml",
        """
        root:
          parallel: watch and work
          policy: success_on_selected
          synchronise: true
          selected: [work]
          children:
            - failure_is_running: watch
              child:
                ProbeFlag: line ok
                key: ok
            - one_shot: work
              policy: on_successful_completion
              child:
                inverter: not failing
                child:
                  ProbeFlaky: fails once
                  failures: 1
        """,
    )
    root = load_tree(path, ctx)
    assert isinstance(root, py_trees.composites.Parallel)
    assert isinstance(root.policy, py_trees.common.ParallelPolicy.SuccessOnSelected)
    assert root.policy.synchronise is True
    assert [c.name for c in root.policy.children] == ["work"]
    watch, work = root.children
    assert isinstance(watch, py_trees.decorators.FailureIsRunning)
    assert isinstance(work, py_trees.decorators.OneShot)
    assert work.policy == py_trees.common.OneShotPolicy.ON_SUCCESSFUL_COMPLETION
    # inverter turns the first failure into SUCCESS: the selected child succeeds at once
    root.tick_once()
    assert root.status == Status.SUCCESS


def test_timeout_counts_line_seconds_whatever_the_clock_speed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.yaml",
        """
        root:
          timeout: picture deadline
          seconds: 1.0
          child:
            ProbeHold: wait for picture
        """,
    )
    for speed in (10.0, 0.01):  # line time is what counts, not the wall time it takes
        ctx = make_ctx(speed=speed)
        root = load_tree(path, ctx)
        assert root.duration == pytest.approx(1.0)
        ctx.bb.now = 5.0
        root.tick_once()
        ctx.bb.now = 5.99
        root.tick_once()
        assert root.status == Status.RUNNING
        ctx.bb.now = 6.01
        root.tick_once()
        assert root.status == Status.FAILURE
        assert root.decorated.stopped_with == Status.INVALID


def test_eternal_guard_preempts_its_child_when_the_condition_fails(
    tmp_path: Path, ctx: Context
) -> None:
    path = write(
        tmp_path,
        "g.yaml",
        """
        root:
          eternal_guard: while the belt runs
          condition:
            ProbeFlag: belt running
            key: belt
          child:
            ProbeHold: sorting
        """,
    )
    root = load_tree(path, ctx)
    assert isinstance(root, Guard)
    hold = root.decorated
    ctx.options["belt"] = True
    root.tick_once()
    root.tick_once()
    assert root.status == Status.RUNNING and hold.status == Status.RUNNING
    ctx.options["belt"] = False
    root.tick_once()
    assert root.status == Status.FAILURE
    assert hold.stopped_with == Status.INVALID
    assert hold.status == Status.INVALID


def test_included_subtree_is_built_and_renamed(tmp_path: Path, ctx: Context) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, "leafy.yaml", "root:\n  ProbeSucceed: original name\n")
    path = write(
        tmp_path,
        "main.yaml",
        """
        root:
          sequence: both
          children:
            - include: sub/leafy.yaml
            - include: sub/leafy.yaml
              name: renamed
        """,
    )
    root = load_tree(path, ctx)
    first, second = root.children
    assert isinstance(first, ProbeSucceed) and isinstance(second, ProbeSucceed)
    assert first is not second
    assert (first.name, second.name) == ("original name", "renamed")


# --- errors: each names the file and the line ------------------------------------------------

ERROR_CASES = {
    "unknown_parameter": (
        """
        root:
          sequence: s
          children:
            - ProbeRod: push rod
              rodd: 3
        """,
        5,
        ["node 'push rod' (ProbeRod)", "unknown parameter 'rodd'", "'rod'"],
    ),
    "unknown_kind_with_suggestion": (
        """
        root:
          sequence: s
          children:
            - ProbeSucceed: fine
            - ProbeSuceed: typo
        """,
        5,
        ["unknown node kind 'ProbeSuceed'", "did you mean 'ProbeSucceed'"],
    ),
    "wrong_parameter_type": (
        """
        root:
          ProbeRod: push rod
          rod: three
        """,
        3,
        ["node 'push rod' (ProbeRod)", "parameter 'rod' must be int"],
    ),
    "bool_is_not_an_int": (
        """
        root:
          retry: r
          num_failures: true
          child: {ProbeSucceed: x}
        """,
        3,
        ["node 'r' (retry)", "parameter 'num_failures' must be int"],
    ),
    "missing_required_parameter": (
        """
        root:
          sequence: s
          children:
            - ProbeRod: push rod
              seconds: 1
        """,
        4,
        ["node 'push rod' (ProbeRod)", "missing required parameter 'rod'"],
    ),
    "missing_children": (
        """
        root:
          selector: pick
        """,
        2,
        ["node 'pick' (selector)", "'children:'"],
    ),
    "empty_children": (
        """
        root:
          sequence: s
          children: []
        """,
        3,
        ["node 's' (sequence)", "empty"],
    ),
    "decorator_without_child": (
        """
        root:
          sequence: s
          children:
            - inverter: not
        """,
        4,
        ["node 'not' (inverter)", "'child:'"],
    ),
    "two_kinds_in_one_node": (
        """
        root:
          sequence: s
          selector: t
          children:
            - ProbeSucceed: x
        """,
        3,
        ["two node kinds 'sequence' and 'selector'"],
    ),
    "name_not_a_string": (
        """
        root:
          sequence: s
          children:
            - ProbeSucceed: [a, b]
        """,
        4,
        ["(ProbeSucceed)", "name must be text"],
    ),
    "root_key_missing": (
        """
        # only a comment and a typo
        rooot:
          ProbeSucceed: x
        """,
        2,
        ["unknown top-level key 'rooot'", "did you mean 'root'"],
    ),
    "yaml_syntax_error": (
        """
        root:
          sequence: s
          children:
            - ProbeSucceed: x
           - ProbeSucceed: y
        """,
        5,
        ["YAML syntax error"],
    ),
    "leaf_rejects_a_value_itself": (
        """
        root:
          sequence: s
          children:
            - ProbeRod: push rod
              rod: 9
        """,
        4,
        ["node 'push rod' (ProbeRod)", "rod must be 2..4, got 9"],
    ),
    "literal_parameter_out_of_choices": (
        """
        root:
          ProbeRod: r
          rod: 2
          mode: medium
        """,
        4,
        ["parameter 'mode' must be one of fast|slow"],
    ),
    "child_given_a_list": (
        """
        root:
          retry: r
          num_failures: 2
          child:
            - ProbeSucceed: a
        """,
        4,
        ["node 'r' (retry)", "not a list"],
    ),
    "repeat_zero_times": (
        """
        root:
          repeat: r
          num_success: 0
          child: {ProbeSucceed: a}
        """,
        3,
        ["num_success must be at least 1, or -1"],
    ),
    "timeout_not_positive": (
        """
        root:
          timeout: t
          seconds: -1
          child: {ProbeSucceed: a}
        """,
        3,
        ["seconds must be a positive number"],
    ),
    "selected_names_no_child": (
        """
        root:
          parallel: p
          policy: success_on_selected
          selected: [nobody]
          children:
            - ProbeSucceed: somebody
        """,
        4,
        ["node 'p' (parallel)", "'nobody' is not a child's name"],
    ),
    "node_is_not_a_mapping": (
        """
        root:
          sequence: s
          children:
            - ProbeSucceed: a
            - just text
        """,
        5,
        ["a node must be a mapping", "'just text'"],
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_tree_is_a_spec_error_naming_file_line_and_node(
    case: str, tmp_path: Path, ctx: Context
) -> None:
    text, line, fragments = ERROR_CASES[case]
    path = write(tmp_path, f"{case}.yaml", text)
    err = error_of(path, ctx)
    assert (err.file, err.line) == (str(path), line), str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    for fragment in fragments:
        assert fragment in str(err)


def test_missing_include_names_the_including_file_and_line(tmp_path: Path, ctx: Context) -> None:
    path = write(
        tmp_path,
        "main.yaml",
        """
        root:
          sequence: s
          children:
            - ProbeSucceed: a
            - include: nowhere.yaml
        """,
    )
    err = error_of(path, ctx)
    assert (err.file, err.line) == (str(path), 5)
    assert "include 'nowhere.yaml'" in str(err) and "no such file" in str(err)


def test_include_cycle_is_an_error_at_the_include_line(tmp_path: Path, ctx: Context) -> None:
    write(tmp_path, "a.yaml", "root:\n  sequence: a\n  children:\n    - include: b.yaml\n")
    b = write(
        tmp_path, "b.yaml", "root:\n  retry: b\n  num_failures: 2\n  child:\n    include: a.yaml\n"
    )
    err = error_of(tmp_path / "a.yaml", ctx)
    assert (err.file, err.line) == (str(b), 5)
    assert "include cycle a.yaml -> b.yaml -> a.yaml" in str(err)


def test_error_inside_an_included_file_names_that_file_and_line(
    tmp_path: Path, ctx: Context
) -> None:
    sub = write(tmp_path, "sub.yaml", "root:\n  ProbeRod: push rod\n  rod: 3\n  speed: 2\n")
    main = write(
        tmp_path, "main.yaml", "root:\n  sequence: s\n  children:\n    - include: sub.yaml\n"
    )
    err = error_of(main, ctx)
    assert (err.file, err.line) == (str(sub), 4)
    assert "node 'push rod' (ProbeRod): unknown parameter 'speed'" in str(err)


def test_yaml_syntax_error_in_an_included_file_names_that_file(
    tmp_path: Path, ctx: Context
) -> None:
    sub = write(tmp_path, "sub.yaml", "root:\n  ProbeSucceed: [unclosed\n")
    main = write(tmp_path, "main.yaml", "root:\n  include: sub.yaml\n")
    err = error_of(main, ctx)
    assert err.file == str(sub) and err.line is not None
    assert "YAML syntax error" in str(err)


def test_missing_tree_file_is_a_spec_error(tmp_path: Path, ctx: Context) -> None:
    err = error_of(tmp_path / "absent.yaml", ctx)
    assert err.file == str(tmp_path / "absent.yaml") and "cannot read file" in str(err)


def test_tree_deeper_than_the_limit_is_rejected_not_crashed(tmp_path: Path, ctx: Context) -> None:
    node: dict[str, Any] = {"ProbeSucceed": "bottom"}
    for i in range(MAX_DEPTH + 5):
        node = {"inverter": f"level {i}", "child": node}
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump({"root": node}), encoding="utf-8")
    err = error_of(path, ctx)
    assert err.file == str(path) and err.line is not None
    assert f"deeper than {MAX_DEPTH}" in str(err)


def test_recursive_yaml_alias_is_rejected_not_crashed(tmp_path: Path, ctx: Context) -> None:
    path = write(tmp_path, "loop.yaml", "root: &n\n  inverter: loop\n  child: *n\n")
    err = error_of(path, ctx)
    assert err.file == str(path)


def test_alias_bomb_is_rejected_before_it_expands(tmp_path: Path, ctx: Context) -> None:
    items = ["    - &a0 {ProbeSucceed: x}"]
    for i in range(1, 20):  # 2**20 nodes once the aliases are expanded
        items.append(f"    - &a{i} {{sequence: s{i}, children: [*a{i - 1}, *a{i - 1}]}}")
    text = "root:\n  sequence: top\n  children:\n" + "\n".join(items) + "\n"
    path = write(tmp_path, "bomb.yaml", text)
    err = error_of(path, ctx)
    # an alias repeats a node, name and all: the second copy is a duplicate name
    assert err.file == str(path) and "the name is already used" in str(err)


def test_a_tree_with_too_many_nodes_is_rejected_by_the_node_limit(
    tmp_path: Path, ctx: Context
) -> None:
    items = [f"    - ProbeSucceed: x{i}" for i in range(MAX_NODES + 1)]
    text = "root:\n  sequence: top\n  children:\n" + "\n".join(items) + "\n"
    path = write(tmp_path, "big.yaml", text)
    err = error_of(path, ctx)
    assert err.file == str(path) and f"more than {MAX_NODES} nodes" in str(err)


def test_node_catalogue_lists_kinds_and_registered_leaves_with_parameters() -> None:
    text = node_catalogue()
    for key in KINDS:
        assert f"{key}:" in text
    assert "include:" in text
    assert "ProbeRod: Declares typed parameters" in text
    assert "rod (int, required): rod 2..4" in text
    assert "mode (fast|slow, default 'fast')" in text
    assert "num_failures (int, required)" in text


def test_node_catalogue_says_what_each_leaf_does_in_whole_sentences() -> None:
    """run.py --help gives each leaf its docstring's first paragraph on one line, whole,
    even where it runs over several lines (TrackItems', StackEmpty's), not its first line."""
    lines = node_catalogue().splitlines()
    said = {n: next(ln for ln in lines if ln.startswith(f"  {n}: ")) for n in REGISTRY}
    assert said["TrackItems"].startswith("  TrackItems: Match this tick's gate edges and ")
    assert said["TrackItems"].endswith(" a stray edge is counted and ignored.")
    assert said["StackEmpty"].endswith(" lengthened after an earlier empty feed, else FAILURE.")
    ours = [n for n, cls in REGISTRY.items() if cls.__module__.startswith("bt_sorter.")]
    assert len(ours) >= 20
    for name in ours:
        assert said[name].endswith("."), said[name]


# --- property: any text is a tree or a SpecError, never a crash -------------------------------

_TMP = Path(tempfile.mkdtemp(prefix="bt_sorter_trees_"))
_KIND_WORDS = [*KINDS, "include", *(c.__name__ for c in PROBES)]
_PARAM_WORDS = ["children", "child", "condition", "root", "name", "memory", "policy", "seconds",
                "num_failures", "num_success", "selected", "synchronise", "rod", "key",
                "failures", "mode"]  # fmt: skip
_WORDS = _KIND_WORDS + _PARAM_WORDS
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(_WORDS)
    | st.text(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(_WORDS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)

_PARAM_VALUES = _scalars | st.lists(st.sampled_from(["a", "x", "work"]), max_size=2)


def _shaped(kind: str, name: Any, params: dict[str, Any], kids: list[Any]) -> dict[str, Any]:
    """A node of ``kind`` with the structural keys its kind takes, and some parameters."""
    node = {kind: name, **params}
    shape = KINDS[kind].shape if kind in KINDS else "leaf"
    if shape == "composite":
        node["children"] = kids
    elif shape == "decorator":
        node["child"] = kids[0] if kids else None
        if kind == "eternal_guard":
            node["condition"] = kids[-1] if kids else None
    return node


_names = st.text(min_size=1, max_size=5) | st.sampled_from([None, 3, ""])
_params = st.dictionaries(st.sampled_from(_PARAM_WORDS[4:]), _PARAM_VALUES, max_size=2)
_leaves = st.builds(_shaped, st.sampled_from(_KIND_WORDS), _names, _params, st.just([]))
_nodes = st.recursive(  # mostly well-shaped trees with random parameters: reach the builders
    _leaves,
    lambda inner: (
        st.builds(
            _shaped, st.sampled_from(_KIND_WORDS), _names, _params, st.lists(inner, max_size=3)
        )
        | st.lists(inner, max_size=2)
    ),
    max_leaves=12,
)


def _load_text(text: str) -> None:
    path = _TMP / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        root = load_tree(path, make_ctx())
    except SpecError as err:
        assert err.file == str(path)
        return
    assert isinstance(root, py_trees.behaviour.Behaviour)


@settings(max_examples=150)
@given(st.text(max_size=200))
def test_any_text_loads_or_raises_only_spec_error(text: str) -> None:
    _load_text(text)


@settings(max_examples=300)
@given(_values | _nodes, st.booleans())
def test_any_yaml_structure_loads_or_raises_only_spec_error(value: Any, wrap: bool) -> None:
    _load_text(yaml.safe_dump({"root": value} if wrap else value))


# --- the repository's own trees --------------------------------------------------------------


def test_every_tree_in_the_repository_loads_with_its_includes_and_config_timings() -> None:
    import bt_sorter.behaviours  # noqa: F401  (the real leaves)
    from bt_sorter.behaviours.belt import Wait

    for path in sorted((REPO / "trees").rglob("*.yaml")):
        load_tree(path, make_ctx())  # any problem is a SpecError naming the file

    ctx = make_ctx()
    sort = list(load_tree(REPO / "trees" / "sort.yaml", ctx).iterate())
    leaves = {type(node).__name__ for node in sort}
    # Classify comes from classify.yaml through one_item.yaml: the includes were expanded
    assert {"FeedItem", "AwaitPicture", "Classify", "PushRod", "RaiseAlarm"} <= leaves
    (run_up,) = (node for node in sort if isinstance(node, Wait))
    run_up.initialise()
    assert run_up.duration == ctx.config.timings.belt_start_wait  # the config's, not a literal


# -- for_each_rod: one branch per classifying rod of the line's topology ---------------------

PER_ROD = """
root:
  parallel: rods
  policy: success_on_all
  children:
    - ProbeSucceed: before
    - for_each_rod: every rod of the line
      child:
        sequence: rod {rod} at gate {gate}
        children:
          - ProbeRod: push rod {rod}
            rod: "{rod}"
            mode: fast
          - include: note.yaml
            name: note rod {rod}
"""


def shaped_ctx(gates: int, rod_gates: tuple[int, ...]) -> Context:
    from bt_sorter.linemodel.model import LineModel
    from bt_sorter.topology import Topology

    topology = Topology(gates=gates, rod_gates=rod_gates)
    return Context(bb=Blackboard(line=LineModel(topology=topology)),
                   config=load_config().replace(topology=topology), clock=LineClock(),
                   record=Record(None))  # fmt: skip


def test_for_each_rod_builds_one_branch_per_declared_rod(tmp_path: Path) -> None:
    """The same file serves the FS scene (rods 2..4) and a line whose gate 1 only tracks
    (rods 2..4 at gates 2..4): {rod} and {gate} are replaced in names and parameters, in
    included files too, and a value that is exactly {rod} is the rod's number."""
    write(tmp_path, "note.yaml", "root:\n  ProbeSucceed: noted\n")
    path = write(tmp_path, "rods.yaml", PER_ROD)
    for ctx, expected in (
        (make_ctx(), [(2, 1), (3, 2), (4, 3)]),
        (shaped_ctx(4, (2, 3, 4)), [(2, 2), (3, 3), (4, 4)]),
    ):
        root = load_tree(path, ctx)
        branches = root.children[1:]
        assert [b.name for b in branches] == [f"rod {r} at gate {g}" for r, g in expected]
        for branch, (rod, _) in zip(branches, expected, strict=True):
            push, note = branch.children
            assert isinstance(push, ProbeRod) and push.rod == rod and push.name == f"push rod {rod}"
            assert note.name == f"note rod {rod}"


def test_for_each_rod_serves_a_five_bin_line_unquoted_placeholders_too(tmp_path: Path) -> None:
    """Five classifying rods: four branches. YAML reads an unquoted {rod} as a mapping;
    it is taken as meant."""
    text = """
    root:
      sequence: rods
      children:
        - for_each_rod: every rod
          child:
            ProbeFlaky: rod {rod} at gate {gate}
            failures: {rod}
    """
    root = load_tree(write(tmp_path, "rods.yaml", text), shaped_ctx(4, (1, 2, 3, 4)))
    assert [(c.name, c.failures) for c in root.children] == [
        (f"rod {rod} at gate {rod - 1}", rod) for rod in (2, 3, 4, 5)
    ]


NESTED = """
root:
  parallel: rods
  policy: success_on_all
  children:
    - for_each_rod: every rod
      child:
        parallel: rod {rod}
        policy: success_on_all
        children:
          - for_each_rod: every rod again
            child:
              ProbeSucceed: rod {rod}
"""


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # an error inside the template names the file, the template's line and the rod's node
        (PER_ROD.replace('rod: "{rod}"', 'rod: "{rod}"\n            sconds: 1'), 12,
         "node 'push rod 2' (ProbeRod): unknown parameter 'sconds'"),
        (PER_ROD.replace("ProbeSucceed: before", "ProbeSucceed: rod {rod}"), 5,
         "{rod} in 'ProbeSucceed' is known only inside 'for_each_rod:'"),
        (NESTED, 10, "for_each_rod 'every rod again': inside another for_each_rod"),
        ("root:\n  for_each_rod: at the top\n  child:\n    ProbeSucceed: x\n", 2,
         "belongs in a 'children:' list"),
        (PER_ROD.replace("      child:\n        sequence", "      chld:\n        sequence"), 7,
         "unknown parameter 'chld'"),
    ],
)  # fmt: skip
def test_for_each_rod_errors_name_file_line_and_node(
    tmp_path: Path, ctx: Context, text: str, line: int, message: str
) -> None:
    write(tmp_path, "note.yaml", "root:\n  ProbeSucceed: noted\n")
    path = tmp_path / "rods.yaml"
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    error = error_of(path, ctx)
    assert str(error).startswith(f"{path}:{line}: "), str(error)
    assert message in str(error)
