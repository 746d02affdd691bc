"""What a third-party plugin author, writing against ``synthbench.api`` only,
runs into: each test is a mistake (or a gap) found by writing a generator, a
protocol and a dataset as an installed package, with the fix's behaviour."""

from __future__ import annotations

import pytest

import synthbench.api as api
from synthbench.benchmark.registry import Registry

GENERATOR_BASE = "synthbench.generators.base:Generator"
PROTOCOL_BASE = "synthbench.protocols.base:Protocol"


def _registry(kind: str, cls: type) -> Registry:
    base = GENERATOR_BASE if kind == "generator" else PROTOCOL_BASE
    reg = Registry(kind, "synthbench.test-author-review", {}, base=base)
    reg._targets["mine"] = f"{cls.__module__}:{cls.__qualname__}"
    reg._origin["mine"] = "entry point (my-package)"
    return reg


# ------------------------------------------------------------ the public API


def test_a_protocol_can_declare_every_documented_ranking_rule_from_the_api():
    """``metrics`` rules are True, False, None or a Target (closest to a value);
    Target was not in synthbench.api, so a plugin had to import an internal module."""
    from synthbench.api import Target, number_text, parse_float_list, parse_int_list

    assert Target(0.5).value == 0.5
    assert [f"top1_x{number_text(m)}" for m in parse_float_list("1,2.5")] == ["top1_x1", "top1_x2.5"]
    assert parse_int_list("0,30") == (0, 30)


# ------------------------------------------- declarations, refused on lookup


class _Gen(api.Generator):
    name = "mine"
    version = 1
    options = {"noise": api.Option("noise", 0.1, "Noise std.", float, check=lambda v: v >= 0,
                                   check_help="must be >= 0")}

    def fit(self, ctx):
        return {"dataset_digest": ctx.dataset_digest}


class _StrVersion(_Gen):
    version = "1.0"


class _BadDefault(_Gen):
    options = {"noise": api.Option("noise", -1.0, "Noise std.", float, check=lambda v: v >= 0,
                                   check_help="must be >= 0")}


class _TextDefault(_Gen):
    options = {"steps": api.Option.positive_int("steps", "Sampler steps.", default="10")}


class _Proto(api.Protocol):
    name = "mine"
    version = 1
    metrics = {"ncm_top1": True, "ncm_top1_x{m}": True, "mean_dist": False}
    headline = "ncm_top1"


class _StrVersionProto(_Proto):
    version = "2"


class _UndeclaredHeadline(_Proto):
    headline = "top1"  # the base class's default, which this protocol does not emit


@pytest.mark.parametrize("kind, cls, says", [
    ("generator", _StrVersion, "version = '1.0' is not an integer"),
    ("protocol", _StrVersionProto, "version = '2' is not an integer"),
    ("generator", _BadDefault, "default of its option 'noise' fails the option's own check"),
    ("protocol", _UndeclaredHeadline, "headline = 'top1' is not one of its declared metrics"),
    ("generator", _TextDefault, "its option 'steps' is '10', which the option reads as 10"),
])
def test_a_wrong_declaration_is_refused_on_lookup_naming_the_plugin(kind, cls, says):
    """Before: a string version made every cell fail with 'not a valid record ...;
    a metric must be a finite number' (exit 1); a default failing its own check
    and an undeclared headline ran with status ok."""
    with pytest.raises(api.UserError) as err:
        _registry(kind, cls).get("mine")
    msg = str(err.value)
    assert f"The {kind} plugin 'mine'" in msg and "entry point (my-package)" in msg and says in msg, msg


class _NoHeadline(api.Protocol):
    name = "mine"
    metrics = {"score": True}  # headline left at the base's "top1": the tables lead with the first column


def test_good_declarations_and_every_builtin_pass():
    assert _registry("generator", _Gen).get("mine") is _Gen
    assert _registry("protocol", _Proto).get("mine") is _Proto
    assert _registry("protocol", _NoHeadline).get("mine") is _NoHeadline
    for reg in (api.GENERATORS, api.PROTOCOLS, api.DATASETS):
        for name in reg.names():
            reg.get(name)


# ------------------------------------------------- what a protocol returns


class _Emits(api.Protocol):
    name = "emits-undeclared"
    metrics = {"score": True, "score_x{m}": True}
    headline = "score"
    uses_reference_classifier = False

    def run(self, ctx):
        m = api.metric(1.0, None, 1, True)
        return api.ProtocolResult({"score": m, "score_x2": m, "surprise": m}, {})


class _EmitsViaSuper(_Emits):
    name = "emits-via-super"
    metrics = {"score": True, "score_x{m}": True, "surprise": True}

    def run(self, ctx):  # the base's result is checked against this class's declarations, once
        return super().run(ctx)


class _ReturnsNothing(_Emits):
    name = "returns-nothing"

    def run(self, ctx):
        super().run(ctx)


def test_a_protocol_emitting_an_undeclared_metric_fails_its_cell_naming_it(smoke_digits, tmp_path):
    """Before: the record was stored with status ok and a metric no table or
    ranking rule knew ('surprise')."""
    from synthbench.benchmark.runner import resolve_grid, run_protocol

    with pytest.raises(ValueError, match="emitted 'surprise', which its metrics"):
        _Emits().checked_result(_Emits().run(None))
    via_super = _EmitsViaSuper()  # checked against the subclass's declarations, which name 'surprise'
    assert set(via_super.checked_result(via_super.run(None)).metrics) == {"score", "score_x2", "surprise"}
    with pytest.raises(ValueError, match="run\\(\\) returned NoneType; it must return"):
        _ReturnsNothing().checked_result(_ReturnsNothing().run(None))
    api.PROTOCOLS.register(_Emits.name, _Emits)
    try:
        grid = resolve_grid(smoke_digits, ["real"], _Emits.name, "smoke", (0,), "cpu")
        [cell] = run_protocol(grid, grid.protocols[0], api.ResultStore(tmp_path))
    finally:
        api.PROTOCOLS.unregister(_Emits.name)
    assert cell.record.status is api.Status.FAILED and cell.record.metrics == {}
    assert "protocol emits-undeclared: run() emitted 'surprise'" in cell.record.error


def test_the_default_table_columns_leave_templates_out():
    """Before: ``synthbench evaluate -p meanacc`` showed a column 'ncm_top1_x{m}'
    reading 'n/a (0 of 1 seeds)' for every generator."""
    assert _Proto().table_metrics() == ["ncm_top1", "mean_dist"]


class _TemplateColumns(_Proto):
    def table_metrics(self):
        return ["ncm_top1"] + [f"ncm_top1_x{api.number_text(m)}" for m in (1, 2)]


def test_a_protocol_lists_its_template_instances_by_overriding_table_metrics():
    cls = _TemplateColumns
    assert all(cls.declared(c) for c in cls().table_metrics())


class _Elsewhere(_Gen):
    name = "somethingelse"


def test_a_class_name_other_than_the_registered_one_is_refused():
    """Before: listed under the entry point's name, then 'evaluate' planned its
    cells under the class's and failed looking it up ('Unknown generator
    'somethingelse''), after the real row's cells had run."""
    with pytest.raises(api.UserError, match="name = 'somethingelse', but it is registered as 'mine'"):
        _registry("generator", _Elsewhere).get("mine")


def test_importing_what_synthbench_api_does_not_hold_says_to_use_the_api(tmp_path, monkeypatch):
    (tmp_path / "author_plugin.py").write_text("from synthbench.api import Generator, sample_seeds\n")
    (tmp_path / "author_plugin2.py").write_text("from synthbench.no_such_module import Generator\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("author_plugin", "author_plugin2"):
        reg = Registry("generator", "synthbench.test-author-review", {"mine": f"{module}:G"}, base=GENERATOR_BASE)
        with pytest.raises(api.UserError) as err:
            reg.get("mine")
        assert "imports from synthbench.api only" in str(err.value) and "FitContext" in str(err.value)
    reg = Registry("generator", "synthbench.test-author-review", {"mine": "no_such_dependency:G"}, base=GENERATOR_BASE)
    with pytest.raises(api.UserError, match="Install what it needs"):
        reg.get("mine")


# ------------------------------------------------------------------ datasets


def _split(n, dtype=None, shape=(1, 8, 8), offset=0, seed=0):
    import torch

    x = torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.int64)
    return api.Split(x.to(dtype or torch.uint8), torch.arange(n) % 4 + offset)


class _Blobs(api.DatasetLoader):
    name = "author-blobs"
    train = dict(n=40)
    test = dict(n=12, seed=1)

    def load(self, data_root=None, argument=None):
        return api.Dataset(self.name, list("abcd"), _split(**self.train), _split(**self.test), hflip=False)


class _FloatBlobs(_Blobs):
    name = "author-float"
    train, test = dict(n=40, dtype=__import__("torch").float32), dict(n=12, seed=1)


class _LabelsFromOne(_Blobs):
    name = "author-labels"
    train, test = dict(n=40, offset=1), dict(n=12, seed=1)


class _TwoShapes(_Blobs):
    name = "author-shapes"
    train, test = dict(n=40), dict(n=12, shape=(1, 9, 9), seed=1)


class _Leaky(_Blobs):
    name = "author-leaky"
    train, test = dict(n=40), dict(n=12)  # the first 12 train images again


class _Numpy(_Blobs):
    name = "author-numpy"

    def load(self, data_root=None, argument=None):
        a, b = _split(40), _split(12, seed=1)
        return api.Dataset(self.name, list("abcd"), api.Split(a.images.numpy(), a.labels.numpy()),
                           api.Split(b.images.numpy(), b.labels.numpy()), hflip=False)


@pytest.mark.parametrize("cls, says", [
    (_FloatBlobs, "its train images are torch.float32 (40, 1, 8, 8), not torch.uint8"),
    (_LabelsFromOne, "its train labels run 1..4, outside 0..3"),
    (_TwoShapes, "its train images are (1, 8, 8) and its test images (1, 9, 9)"),
    (_Leaky, "12 of its 12 test images also appear in its train split"),
    (_Numpy, "failed in load(): AttributeError"),
])
def test_an_installed_dataset_that_breaks_the_contract_is_one_paragraph(cls, says):
    """Before: float images, a test split of another shape and a test split
    drawn from the train split gave ok records; labels from 1 failed every cell
    with an IndexError; numpy arrays were a traceback."""
    from synthbench.benchmark.datasets import load_dataset

    api.DATASETS.register(cls.name, cls)
    try:
        with pytest.raises(api.UserError) as err:
            load_dataset(cls.name)
    finally:
        api.DATASETS.unregister(cls.name)
    assert f"The dataset plugin {cls.name!r}" in str(err.value) and says in str(err.value), str(err.value)


def test_a_good_installed_dataset_loads_and_builtins_are_not_wrapped():
    from synthbench.benchmark.datasets import Digits, load_dataset

    api.DATASETS.register(_Blobs.name, _Blobs)
    try:
        assert load_dataset(_Blobs.name).num_classes == 4
    finally:
        api.DATASETS.unregister(_Blobs.name)
    assert api.DATASETS.get("digits") is Digits


def test_a_name_of_another_kind_says_which_kind_it_is():
    """Before: 'synthbench validate replace' (or a protocol author's own) said only
    'Unknown generator 'replace''."""
    with pytest.raises(api.UserError, match="'replace' is a protocol plugin, not a generator"):
        api.GENERATORS.get("replace")
    with pytest.raises(api.UserError, match="'digits' is a dataset plugin, not a protocol"):
        api.PROTOCOLS.get("digits")


class _OneDuplicate(_Blobs):
    name = "author-one-duplicate"

    def load(self, data_root=None, argument=None):
        train, test = _split(400), _split(200, seed=1)
        images = test.images.clone()
        images[0] = train.images[0]  # one exact copy across the splits, as collected datasets hold
        return api.Dataset(self.name, list("abcd"), train, api.Split(images, test.labels), hflip=False)


def test_an_installed_dataset_with_a_few_duplicates_across_splits_loads_with_a_warning(capsys):
    """Exact duplicates between train and test are a fact of collected data
    (CIFAR holds some); refusing the dataset for one left its author no way
    on. Under 1% of the test split it loads and says so; a copied split is
    still refused (above)."""
    from synthbench.benchmark.datasets import load_dataset

    api.DATASETS.register(_OneDuplicate.name, _OneDuplicate)
    try:
        ds = load_dataset(_OneDuplicate.name)
    finally:
        api.DATASETS.unregister(_OneDuplicate.name)
    assert len(ds.test) == 200
    assert "1 of its 200 test images also appear in its train split" in capsys.readouterr().err
