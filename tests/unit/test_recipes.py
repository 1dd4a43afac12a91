"""Typed YAML recipes: defaults, overrides, and an error naming the key for every bad value."""

import copy
from pathlib import Path

import pytest
import yaml

from jukelite.recipes import (
    DataSection,
    RecipeError,
    VQVAERecipe,
    load_recipe,
    recipe_from_dict,
    recipe_to_dict,
)

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "kind": "vqvae",
    "level": "all",
    "data": {"manifest": "data/m.jsonl", "sample_rate": 8000, "sample_length": 64},
    "model": {
        "levels": 2,
        "downs_t": [2, 1],
        "strides_t": [2, 2],
        "width": [8, 8],
        "depth": [1, 1],
        "codebook_size": 16,
        "code_dim": 8,
        "linf_k": 64,
    },
    "output": {"dir": "runs/x", "bundle": "models/x"},
}


def raw(**sections) -> dict:
    """BASE with sections deep-updated; a value of None deletes the key."""
    out = copy.deepcopy(BASE)
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            for key, sub in value.items():
                if sub is None:
                    out[name].pop(key, None)
                else:
                    out[name][key] = sub
        elif value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def error_of(recipe: dict) -> str:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(recipe, source="r.yaml")
    return str(info.value)


@pytest.fixture
def recipe_file(tmp_path):
    def write(content) -> Path:
        path = tmp_path / "recipe.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


# ----------------------------------------------------------------------------- valid recipes
def test_valid_recipe_types_and_defaults():
    recipe = recipe_from_dict(raw())
    assert isinstance(recipe, VQVAERecipe)
    assert recipe.data.manifest == "data/m.jsonl"
    assert recipe.data.sample_length == 64
    assert recipe.model.width == [8, 8]
    assert recipe.model.levels == 2
    assert recipe.levels() == [0, 1]
    assert recipe.train.steps == 2000 and recipe.train.schedule == "constant"
    assert recipe.train.betas == [0.9, 0.999]
    assert recipe.output.bundle == "models/x"


def test_model_sample_rate_and_channels_come_from_data():
    recipe = recipe_from_dict(raw(data={"sample_rate": 16000, "channels": 2}))
    assert recipe.model.sample_rate == 16000
    assert recipe.model.channels == 2
    default = recipe_from_dict(raw(data={"sample_rate": None}))
    assert default.model.sample_rate == DataSection().sample_rate == 22050
    assert default.model.channels == 1


def test_single_level_recipe():
    recipe = recipe_from_dict(raw(level=1))
    assert recipe.level == 1
    assert recipe.levels() == [1]


def test_recipe_to_dict_round_trips():
    recipe = recipe_from_dict(raw(level=0, train={"steps": 5, "ema_decay": 0.99}))
    plain = recipe_to_dict(recipe)
    assert plain["model"]["sample_rate"] == 8000
    assert plain["train"]["steps"] == 5
    plain["model"].pop("sample_rate")
    plain["model"].pop("channels")
    again = recipe_from_dict(plain)
    assert again == recipe


def test_shipped_recipes_load():
    jukebox = load_recipe(REPO / "recipes" / "jukebox" / "vqvae.yaml")
    assert jukebox.model.sample_rate == 44100
    assert jukebox.model.hop_lengths == [8, 32, 128]
    assert jukebox.data.sample_length % 128 == 0
    assert jukebox.train.ema_decay == 0.9999


# ----------------------------------------------------------------------------- overrides
def test_load_recipe_with_overrides(recipe_file):
    path = recipe_file(raw())
    recipe = load_recipe(path, [
        "train.steps=7",
        "train.lr=0.5",
        "train.ema_decay=null",
        "level=1",
        "model.width=[4, 6]",
        "data.sample_length=128",
        "train.device=cpu",
        "train.betas=[0.5, 0.9]",
    ])
    assert recipe.train.steps == 7
    assert recipe.train.lr == 0.5
    assert recipe.train.ema_decay is None
    assert recipe.level == 1 and recipe.levels() == [1]
    assert recipe.model.width == [4, 6]
    assert recipe.data.sample_length == 128
    assert recipe.train.device == "cpu"
    assert recipe.train.betas == [0.5, 0.9]


def test_override_adds_a_missing_section(recipe_file):
    path = recipe_file(raw(train=None))
    recipe = load_recipe(path, ["train.steps=3"])
    assert recipe.train.steps == 3
    assert recipe.train.batch_size == 8


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # Without `=` OmegaConf would read `train.steps` as `train.steps=null`.
        ("train.steps", "override 'train.steps' must look like section.key=value"),
        ("=3", "override '=3' has an empty key"),
        ("train..steps=3", "override 'train..steps=3' has an empty key"),
        ("train.steps=[1", "override 'train.steps=[1': value is not valid YAML"),
    ],
)
def test_malformed_override(recipe_file, override, expected):
    path = recipe_file(raw())
    with pytest.raises(RecipeError) as info:
        load_recipe(path, [override])
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_override_values_are_parsed_as_yaml(recipe_file):
    recipe = load_recipe(recipe_file(raw(train={"ema_decay": 0.9})), [
        "train.lr=1e-4",  # PyYAML alone reads exponents without a dot as strings
        "train.weight_decay=3e-4",
        "train.ema_decay=",  # an empty value is null
        "train.progress=false",
        "train.seed='7'",  # a quoted number still converts to an int field
        "model.depth=[2,1]",
        "output.dir=runs/2024-05-01",
        "output.bundle=2024-05-01",  # a date-like value stays the string given
        "train.device=cuda:1",
    ])
    assert recipe.train.lr == 1e-4 and recipe.train.weight_decay == 3e-4
    assert recipe.train.ema_decay is None
    assert recipe.train.progress is False
    assert recipe.train.seed == 7
    assert recipe.model.depth == [2, 1]
    assert recipe.output.dir == "runs/2024-05-01" and recipe.output.bundle == "2024-05-01"
    assert recipe.train.device == "cuda:1"


def test_later_override_wins(recipe_file):
    recipe = load_recipe(recipe_file(raw()), ["train.steps=3", "train.steps=4"])
    assert recipe.train.steps == 4


def test_override_with_unknown_key_is_refused(recipe_file):
    path = recipe_file(raw())
    with pytest.raises(RecipeError, match=r"unknown key 'train\.stepz'") as info:
        load_recipe(path, ["train.stepz=3"])
    message = str(info.value)
    assert message.startswith(f"{path}:")
    line = next(line for line in message.splitlines() if "stepz" in line)
    assert line.strip().startswith("override 'train.stepz=3': unknown key 'train.stepz'")
    valid = line.split("valid keys here: ")[1].split(", ")
    assert valid == sorted(valid) and {"steps", "lr", "ema_decay"} <= set(valid)


def test_every_bad_override_is_listed_at_once(recipe_file):
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe_file(raw()), [
            "train.steps=3", "extra.x=1", "model.sampel_rate=1", "train.lr=fast", "train=3",
        ])
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 4
    assert lines[0].endswith(
        "override 'extra.x=1': unknown key 'extra'; "
        "valid keys here: data, kind, level, model, output, train"
    )
    # Keys derived from another section are not offered.
    assert "unknown key 'model.sampel_rate'" in lines[1]
    model_keys = lines[1].split("valid keys here: ")[1].split(", ")
    assert "width" in model_keys and "sample_rate" not in model_keys
    assert "override 'train.lr=fast': 'train.lr'" in lines[2]
    assert "override 'train=3': 'train' must be a mapping of keys, got 3" in lines[3]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.steps=many", "train.steps"),
        ("train.steps=1.5", "train.steps"),
        ("train.steps=null", "train.steps"),
        ("train.steps.x=1", "train.steps"),
        ("model.width=abc", "model.width"),
        ("data.sample_rate=abc", "data.sample_rate"),
    ],
)
def test_override_type_error_names_the_override_and_key(recipe_file, override, key):
    path = recipe_file(raw())
    with pytest.raises(RecipeError) as info:
        load_recipe(path, [override])
    assert str(info.value).startswith(f"{path}:")
    assert f"override '{override}': '{key}'" in str(info.value)


def test_override_keys_are_checked_against_the_recipe_kind(tmp_path):
    recipe = REPO / "recipes" / "tiny" / "prior_top.yaml"
    with pytest.raises(RecipeError, match=r"unknown key 'data\.sample_rate'; valid keys here: "
                                          r"cache_dir, lyrics_version, manifest"):
        load_recipe(recipe, ["data.sample_rate=8000"])
    assert load_recipe(recipe, ["data.lyrics_version=v3"]).data.lyrics_version == "v3"


def test_override_cannot_set_model_sample_rate(recipe_file):
    expected = r"'model\.sample_rate' is taken from 'data\.sample_rate'"
    with pytest.raises(RecipeError, match=expected):
        load_recipe(recipe_file(raw()), ["model.sample_rate=16000"])


# ----------------------------------------------------------------------------- file problems
def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_invalid_yaml(recipe_file):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(recipe_file("kind: [unclosed\n"))


def test_yaml_that_is_not_a_mapping(recipe_file):
    with pytest.raises(RecipeError, match="mapping of sections, got list"):
        load_recipe(recipe_file("- 1\n- 2\n"))


def test_error_names_the_file(recipe_file):
    path = recipe_file(raw(train={"stepz": 1}))
    with pytest.raises(RecipeError, match=str(path)):
        load_recipe(path)


# ----------------------------------------------------------------------------- key errors
def test_unknown_kind():
    message = error_of(raw(kind="prior_x"))
    assert "'kind' must be one of ['prior', 'vqvae'], got 'prior_x'" in message
    assert "'kind'" in error_of(raw(kind=None))


def test_unknown_keys_are_all_listed_with_the_valid_keys():
    message = error_of(raw(train={"stepz": 1}, data={"sampel_rate": 1}, extra_section={}))
    assert "unknown key 'train.stepz'; valid keys here:" in message
    assert "unknown key 'data.sampel_rate'" in message
    assert "unknown key 'extra_section'" in message
    train_line = next(line for line in message.splitlines() if "train.stepz" in line)
    valid = train_line.split("valid keys here: ")[1].split(", ")
    assert valid == sorted(valid)
    assert {"steps", "batch_size", "lr", "warmup", "ema_decay"} <= set(valid)
    top_line = next(line for line in message.splitlines() if "'extra_section'" in line)
    assert top_line.endswith("valid keys here: data, kind, level, model, output, train")


def test_unknown_model_key_does_not_offer_derived_keys():
    message = error_of(raw(model={"widht": [8, 8]}))
    assert "unknown key 'model.widht'" in message
    valid = message.split("valid keys here: ")[1].split(", ")
    assert "width" in valid and "codebook_size" in valid
    assert "sample_rate" not in valid and "channels" not in valid


@pytest.mark.parametrize("key", ["sample_rate", "channels"])
def test_model_key_derived_from_data_is_rejected(key):
    message = error_of(raw(model={key: 1}))
    assert f"'model.{key}' is taken from 'data.{key}'; set it there instead" in message


def test_section_that_is_not_a_mapping():
    assert "'data' must be a mapping of keys, got 3" in error_of(raw(data=3))


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"train": {"steps": "many"}}, "train.steps"),
        ({"train": {"steps": 1.5}}, "train.steps"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"ema_decay": "x"}}, "train.ema_decay"),
        ({"data": {"sample_length": "long"}}, "data.sample_length"),
        ({"data": {"sample_rate": "abc"}}, "data.sample_rate"),
        ({"model": {"width": "abc"}}, "model.width"),
        ({"model": {"codebook_size": "big"}}, "model.codebook_size"),
    ],
)
def test_type_error_names_the_key(sections, key):
    message = error_of(raw(**sections))
    assert message.startswith("r.yaml: ")
    assert f"'{key}'" in message


def test_bad_data_sample_rate_is_reported_under_data_even_when_model_comes_first():
    recipe = raw(data={"sample_rate": "abc"})
    reordered = {"model": recipe.pop("model"), **recipe}
    message = error_of(reordered)
    assert "'data.sample_rate'" in message
    assert "model.sample_rate" not in message


@pytest.mark.parametrize("section", ["data", "output"])
def test_missing_required_key(section):
    field = {"data": "manifest", "output": "dir"}[section]
    message = error_of(raw(**{section: {field: None}}))
    assert f"'{section}.{field}' is required but missing" in message


def test_model_validation_error_is_a_recipe_error():
    message = error_of(raw(model={"width": [8]}))
    assert "VQVAEConfig.width needs one entry per level (2)" in message


# ----------------------------------------------------------------------------- value checks
@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"train": {"schedule": "exp"}}, "'train.schedule' must be one of"),
        ({"train": {"precision": "fp8"}}, "'train.precision' must be one of"),
        ({"train": {"parallel": "zero3"}}, "'train.parallel' must be one of ('ddp', 'fsdp')"),
        ({"train": {"parallel": "fsdp"}}, "a VQ-VAE has none and fits every device whole"),
        ({"train": {"steps": 0}}, "'train.steps' must be >= 1, got 0"),
        ({"train": {"batch_size": 0}}, "'train.batch_size' must be >= 1"),
        ({"train": {"lr": 0}}, "'train.lr' must be > 0"),
        ({"train": {"betas": [0.9]}}, "'train.betas' must hold two numbers"),
        ({"train": {"ema_decay": 1.0}}, "'train.ema_decay' must lie in (0, 1)"),
        ({"data": {"channels": 3}}, "'data.channels' must be 1 or 2, got 3"),
        ({"data": {"valid_fraction": 1.0}}, "'data.valid_fraction' must lie in [0, 1)"),
    ],
)
def test_value_checks(sections, expected):
    assert expected in error_of(raw(**sections))


def test_every_value_problem_is_listed_at_once():
    message = error_of(raw(train={"steps": 0, "lr": -1, "schedule": "exp"}))
    assert "'train.steps'" in message and "'train.lr'" in message
    assert "'train.schedule'" in message


@pytest.mark.parametrize("level", [2, -1, True, "1", "top", 0.5])
def test_level_must_be_all_or_an_existing_level(level):
    message = error_of(raw(level=level))
    assert "'level' must be 'all' or an integer in [0, 2)" in message


@pytest.mark.parametrize("level", ["all", 0, 1])
def test_level_values_accepted(level):
    assert recipe_from_dict(raw(level=level)).level == level


def test_sample_length_must_be_a_multiple_of_the_top_hop():
    # hops 4 and 8: with every level trained the window must be a multiple of 8
    message = error_of(raw(data={"sample_length": 60}))
    assert "'data.sample_length' (60) must be a multiple of the largest hop length trained (8)" in (
        message
    )
    assert recipe_from_dict(raw(data={"sample_length": 72})).data.sample_length == 72
    # level 0 alone only needs its own hop (4)
    assert recipe_from_dict(raw(level=0, data={"sample_length": 12})).data.sample_length == 12
    assert "(4)" in error_of(raw(level=0, data={"sample_length": 10}))
