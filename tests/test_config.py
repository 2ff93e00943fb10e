"""experiments.core.config: RunConfig validation, ``--set`` parsing, TOML loading, round trips.

Every rejection must be a ``ConfigError`` (a ValueError) whose message names the key, so
the CLI's one-line error tells the user what to change.
"""

from __future__ import annotations

import dataclasses

import pytest
import tomli_w

from experiments.core.config import (
    FIELD_TYPES,
    ConfigError,
    RunConfig,
    load_config,
    named_experiments,
    parse_override,
)

NAMED = sorted(named_experiments())


# -- RunConfig validation: one bad field at a time -------------------------------------

BAD_FIELDS = [
    # (the key the message must name, the constructor arguments)
    ("lr", {"lr": 0.0}),
    ("lr", {"lr": -0.1}),
    ("lr", {"lr": float("nan")}),          # `not lr > 0` also rejects NaN
    ("momentum", {"momentum": -0.5}),
    ("dampening", {"dampening": -0.1}),
    ("dampening", {"dampening": 1.5}),
    ("weight_decay", {"weight_decay": -1e-4}),
    ("nesterov", {"nesterov": True}),                                 # without momentum
    ("nesterov", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("batch_size", {"batch_size": 0}),
    ("batch_size", {"batch_size": -4}),
    ("batch_size", {"batch_size": "half"}),
    ("epochs", {"epochs": 0}),
    ("steps", {"steps": -1}),
    ("fd_every", {"fd_every": -1}),
    ("log_every", {"log_every": 0}),
    ("seed", {"seed": -1}),
    ("activation", {"activation": "softplus"}),
    ("output_activation", {"output_activation": "softmax"}),
    ("loss", {"loss": "hinge"}),
    ("dtype", {"dtype": "float16"}),
    ("mode", {"mode": "lockstep"}),
    ("manual_backend", {"manual_backend": "jax"}),
    ("device", {"device": "gpu"}),
    ("device", {"device": "cuda:x"}),
    ("bias", {"bias": "maybe"}),
    ("bias", {"bias": 1}),                 # 1 is not True: bias must be a real bool
    ("sizes", {"sizes": (3,)}),
    ("sizes", {"sizes": (3, 0, 1)}),
    ("hidden", {"hidden": (0,)}),
    ("hidden", {"hidden": (4, -2)}),
    ("loss", {"loss": "bce", "activation": "relu"}),                  # output inherits relu
    ("loss", {"loss": "bce", "output_activation": "identity"}),
]


@pytest.mark.parametrize(("key", "kwargs"), BAD_FIELDS,
                         ids=[f"{k}-{'-'.join(map(str, kw.values()))}" for k, kw in BAD_FIELDS])
def test_bad_field_is_a_config_error_naming_the_key(key, kwargs):
    with pytest.raises(ConfigError) as err:
        RunConfig(**kwargs)
    msg = str(err.value)
    assert msg.startswith(f"{key} = "), msg
    assert "\n" not in msg, msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


GOOD_CORNERS = [
    {"momentum": 0.9, "nesterov": True},
    {"dampening": 0.0}, {"dampening": 1.0},
    {"bias": "frozen"}, {"bias": False},
    {"batch_size": 1}, {"batch_size": "full"},
    {"hidden": ()},                                    # no hidden layer
    {"sizes": (2, 1)},
    {"loss": "bce", "activation": "relu", "output_activation": "sigmoid"},
    {"device": "cuda"}, {"device": "cuda:1"},          # checked for availability at run time
    {"steps": 0}, {"fd_every": 0},
]


@pytest.mark.parametrize("kwargs", GOOD_CORNERS, ids=str)
def test_boundary_values_are_accepted(kwargs):
    RunConfig(**kwargs)


def test_config_is_frozen():
    cfg = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 2.0  # type: ignore[misc]


# -- parse_override --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "key", "value", "kind"), [
    ("lr=0.5", "lr", 0.5, float),
    ("lr=1", "lr", 1.0, float),                 # an integer is accepted for a float key
    ("lr = 2e-3", "lr", 2e-3, float),           # spaces around '=' are ignored
    ("epochs=3", "epochs", 3, int),
    ("nesterov=true", "nesterov", True, bool),
    ("shuffle=false", "shuffle", False, bool),
    ("sizes=[2,3,1]", "sizes", (2, 3, 1), tuple),
    ("hidden=5", "hidden", (5,), tuple),        # one width may be given bare
    ("hidden=[]", "hidden", (), tuple),
    ("dataset=iris", "dataset", "iris", str),   # bare string: not TOML, taken as text
    ("dataset=csv:data/train.csv", "dataset", "csv:data/train.csv", str),
    ('dataset="xor"', "dataset", "xor", str),   # quoted TOML string
    ("init=legacy-rand", "init", "legacy-rand", str),
    ("batch_size=full", "batch_size", "full", str),
    ("batch_size=32", "batch_size", 32, int),
    ("bias=frozen", "bias", "frozen", str),
    ("bias=false", "bias", False, bool),
    ("description=", "description", "", str),
])
def test_parse_override_types(text, key, value, kind):
    got_key, got = parse_override(text)
    assert got_key == key
    assert got == value
    assert type(got) is kind


@pytest.mark.parametrize(("text", "key"), [
    ("lr=abc", "lr"),
    ("lr=true", "lr"),                  # bool is not a number here
    ("epochs=1.5", "epochs"),
    ("epochs=true", "epochs"),
    ("nesterov=1", "nesterov"),
    ("nesterov=yes", "nesterov"),
    ('sizes=[1,"a"]', "sizes"),
    ("sizes=[2,true]", "sizes"),
    ("sizes=abc", "sizes"),
    ("batch_size=true", "batch_size"),
    ("batch_size=half", "batch_size"),
    ("bias=1", "bias"),
    ("bias=maybe", "bias"),
    ("seed=0.5", "seed"),
])
def test_parse_override_wrong_type_names_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        parse_override(text)
    msg = str(err.value)
    assert msg.startswith(f"{key} = "), msg
    assert f"--set {text}" in msg, msg        # says where the value came from


@pytest.mark.parametrize(("text", "suggestion"), [
    ("lrr=0.1", "lr"),
    ("momentun=0.9", "momentum"),
    ("batchsize=8", "batch_size"),
    ("activaton=tanh", "activation"),
])
def test_parse_override_unknown_key_suggests_the_closest(text, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        parse_override(text)


def test_parse_override_unknown_key_without_close_match_lists_keys():
    with pytest.raises(ConfigError) as err:
        parse_override("zzzzzz=1")
    assert "unknown config key 'zzzzzz'" in str(err.value)
    assert "known keys:" in str(err.value)
    assert all(k in str(err.value) for k in FIELD_TYPES)


@pytest.mark.parametrize("text", ["lr", "lr0.5", "=0.5", " = 1", ""])
def test_parse_override_needs_key_equals_value(text):
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(text)


# -- load_config -----------------------------------------------------------------------

def test_some_experiments_are_named():
    assert "seed" in NAMED


@pytest.mark.parametrize("name", NAMED)
def test_every_named_experiment_loads(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert cfg.description.strip(), f"{name} has no description (shown by `handgrad list`)"


@pytest.mark.parametrize("name", NAMED)
def test_named_experiment_toml_uses_known_keys_only(name):
    import tomllib
    data = tomllib.loads(named_experiments()[name].read_text(encoding="utf-8"))
    assert set(data) <= set(FIELD_TYPES)


def test_seed_experiment_is_the_seed_script():
    cfg = load_config("seed")
    assert (cfg.dataset, cfg.hidden, cfg.activation, cfg.bias, cfg.loss) == \
        ("seed", (4,), "sigmoid", False, "half_sse")
    assert (cfg.init, cfg.seed, cfg.lr, cfg.batch_size, cfg.epochs) == \
        ("legacy-rand", 10, 1.0, "full", 10000)


def test_overrides_apply_after_the_file():
    cfg = load_config("seed", ["epochs=2", "lr=0.25", "dtype=float32"])
    assert (cfg.epochs, cfg.lr, cfg.dtype) == (2, 0.25, "float32")
    assert cfg.init == "legacy-rand"           # untouched keys keep the file's values


def test_later_override_wins():
    assert load_config("seed", ["lr=0.5", "lr=0.25"]).lr == 0.25


def test_override_that_fails_validation_names_key_and_source():
    with pytest.raises(ConfigError) as err:
        load_config("seed", ["lr=-1"])
    msg = str(err.value)
    assert msg.startswith("lr = -1.0"), msg
    assert "seed.toml" in msg and "--set" in msg, msg


def test_toml_file_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('dataset = "xor"\nhidden = [3]\nlr = 0.5\nbias = "frozen"\n',
                    encoding="utf-8")
    cfg = load_config(str(path), ["epochs=2"])
    assert cfg.name == "mine"                  # the file's stem when it sets no name
    assert (cfg.dataset, cfg.hidden, cfg.lr, cfg.bias, cfg.epochs) == \
        ("xor", (3,), 0.5, "frozen", 2)
    assert cfg.activation == RunConfig().activation   # everything else: the defaults


def test_toml_file_name_key_wins_over_stem(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "labelled"\n', encoding="utf-8")
    assert load_config(str(path)).name == "labelled"


@pytest.mark.parametrize(("source", "suggestion"), [("sed", "seed"), ("iriss", "iris"),
                                                    ("xro", "xor")])
def test_unknown_experiment_suggests_the_closest(source, suggestion):
    assert suggestion in NAMED          # else the suggestion could not be made
    with pytest.raises(ConfigError) as err:
        load_config(source)
    msg = str(err.value)
    assert f"unknown experiment {source!r}" in msg
    assert f"did you mean {suggestion!r}" in msg
    assert "handgrad list" in msg


def test_unknown_experiment_without_close_match():
    with pytest.raises(ConfigError, match="unknown experiment 'qqqqqqqq'") as err:
        load_config("qqqqqqqq")
    assert "did you mean" not in str(err.value)


def test_missing_toml_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(str(path))
    assert str(path) in str(err.value)


def test_invalid_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("lr = = 0.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML") as err:
        load_config(str(path))
    assert str(path) in str(err.value)


def test_toml_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(str(path))


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("lrr = 0.5\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    msg = str(err.value)
    assert "unknown config key 'lrr'" in msg and "did you mean 'lr'" in msg
    assert str(path) in msg


@pytest.mark.parametrize(("line", "key"), [
    ('lr = "fast"', "lr"),
    ("epochs = 2.5", "epochs"),
    ('nesterov = "yes"', "nesterov"),
    ('hidden = [4, "x"]', "hidden"),
    ("bias = 0", "bias"),
    ("dataset = 3", "dataset"),
])
def test_wrong_type_in_file_names_key_and_file(tmp_path, line, key):
    path = tmp_path / "typed.toml"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    msg = str(err.value)
    assert msg.startswith(f"{key} = "), msg
    assert str(path) in msg, msg


def test_invalid_value_in_file_names_key_and_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("momentum = -1.0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    msg = str(err.value)
    assert msg.startswith("momentum = -1.0"), msg
    assert str(path) in msg, msg


# -- to_dict round trip ----------------------------------------------------------------

NON_DEFAULT = RunConfig(
    name="every-field", description="all fields away from their defaults", dataset="iris",
    target="", standardize=True, sizes=(4, 5, 3), hidden=(5,), activation="tanh",
    output_activation="identity", bias="frozen", loss="cross_entropy", dtype="float32",
    device="cuda:1", manual_backend="torch", init="worked-2-2-2", lr=0.25, momentum=0.9,
    dampening=0.0, weight_decay=1e-4, nesterov=True, batch_size=16, epochs=3, steps=7,
    shuffle=False, seed=42, mode="synced", fd_every=2, log_every=3, out="runs/x",
)


def _round_trip(cfg: RunConfig, tmp_path) -> RunConfig:
    path = tmp_path / "resolved.toml"
    path.write_text(tomli_w.dumps(cfg.to_dict()), encoding="utf-8")
    return load_config(str(path))


@pytest.mark.parametrize("cfg", [RunConfig(), NON_DEFAULT, RunConfig(bias=False, hidden=())],
                         ids=["defaults", "non-default", "no-hidden"])
def test_to_dict_round_trip(cfg, tmp_path):
    assert _round_trip(cfg, tmp_path) == cfg


@pytest.mark.parametrize("name", NAMED)
def test_named_experiment_round_trip(name, tmp_path):
    cfg = load_config(name)
    assert _round_trip(cfg, tmp_path) == cfg


def test_to_dict_spells_out_every_field():
    d = RunConfig().to_dict()
    assert list(d) == list(FIELD_TYPES)
    assert d["hidden"] == [4] and d["sizes"] == []      # tuples become TOML lists


def test_direct_construction_is_type_checked_like_toml():
    with pytest.raises(ConfigError, match="epochs"):
        RunConfig(epochs=1.5)
    with pytest.raises(ConfigError, match="lr"):
        RunConfig(lr="abc")
    assert RunConfig(sizes=[3, 4, 1]).sizes == (3, 4, 1)


def test_text_keys_take_the_text_as_typed():
    assert parse_override("target=2020") == ("target", "2020")
    assert parse_override("name=true") == ("name", "true")
