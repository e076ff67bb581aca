import pytest

from edgezo import recipes as R
from edgezo.overrides import parse_set


def test_registry_refuses_duplicates():
    existing = R.get_recipe("digits-mlp")
    with pytest.raises(R.RecipeError, match="duplicate recipe name 'digits-mlp'"):
        R.register_recipe(R.Recipe("digits-mlp", "again", dict(existing.config), "other.toml"))


def test_duplicate_files_refused(tmp_path, monkeypatch):
    text = 'name = "a"\ndescription = "d"\n[estimator]\nkind = "rge"\n'
    (tmp_path / "one.toml").write_text(text)
    (tmp_path / "two.toml").write_text(text)
    monkeypatch.setattr(R, "_recipe_dir", lambda: tmp_path)
    monkeypatch.setattr(R, "_REGISTRY", None)
    with pytest.raises(R.RecipeError, match="duplicate recipe name 'a'"):
        R.recipes()


def test_parse_errors():
    with pytest.raises(R.RecipeError, match="missing the required field 'description'"):
        R.parse_recipe('name = "x"\n[estimator]\nkind="rge"\n')
    with pytest.raises(R.RecipeError, match="needs an \\[estimator\\]"):
        R.parse_recipe('name = "x"\ndescription = "y"\n')


def test_overrides_and_estimator_swap():
    r = R.apply_overrides(R.get_recipe("digits-mlp-rge"), parse_set(["estimator.q=64", "train.schedule='cosine'"]))
    assert r.config["estimator"]["q"] == 64
    fo = R.with_estimator(r, "fo")
    assert fo.config["estimator"] == {"kind": "fo"}
    assert R.phases_of(fo)[0].estimator.name == "fo"


def test_fo_optimizer_overrides_apply_before_the_fo_copy_and_only_for_fo():
    from edgezo.recipes import get_recipe, with_estimator_and_overrides

    recipe = get_recipe("poisson10")  # [fo_optimizer] Adam 0.1, phases at Adam 0.1 too: use a distinct value
    fo, rest = with_estimator_and_overrides(recipe, "fo", {"fo_optimizer.lr": 0.0123, "train.epochs": 1})
    assert fo.config["optimizer"] == {"kind": "adam", "lr": 0.0123} and rest == {"train.epochs": 1}
    rge, rest = with_estimator_and_overrides(recipe, "rge", {"fo_optimizer.lr": 0.0123})
    assert rest == {"fo_optimizer.lr": 0.0123} and rge.config["estimator"]["kind"] == "rge"
