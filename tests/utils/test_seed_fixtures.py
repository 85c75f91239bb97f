"""The seed fixtures are found in the checkout, or where FLEXCORE_SEED_FIXTURES points."""
import shutil

from flexcore.utils.testing import SEED_FIXTURES_DEFAULT, seed_fixtures_dir


def test_default_is_the_checkout_copy(monkeypatch):
    monkeypatch.delenv("FLEXCORE_SEED_FIXTURES", raising=False)
    assert seed_fixtures_dir() == SEED_FIXTURES_DEFAULT
    assert SEED_FIXTURES_DEFAULT.parts[-3:] == ("tests", "fixtures", "seed")


def test_environment_variable_wins_and_an_empty_folder_is_none(monkeypatch, tmp_path):
    copy = tmp_path / "fixtures"
    copy.mkdir()
    monkeypatch.setenv("FLEXCORE_SEED_FIXTURES", str(copy))
    assert seed_fixtures_dir() is None  # no *.pt: not silently replaced by the default
    shutil.copy(SEED_FIXTURES_DEFAULT / "ckconv2d_mlp.pt", copy)
    assert seed_fixtures_dir() == copy
