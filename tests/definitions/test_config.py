from pathlib import Path

import pytest

from gristmill.definitions.config import load_config
from gristmill.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gristmill.toml").write_text(text)
    return tmp_path


def test_defaults_and_values(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, 'name = "x"\nparallelism = 3\n[duckdb]\nmemory_limit = "1GB"\n')
    )
    assert config.name == "x"
    assert config.parallelism == 3
    assert config.duckdb.memory_limit == "1GB"
    assert config.engine == "auto" and config.auto_threshold == "20GB"
    assert config.lake == "lake"


def test_unknown_key_names_file_line_and_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'name = "x"\n\nparalelism = 4\n'))
    err = info.value
    assert "unknown key 'paralelism'" in err.message
    assert err.location is not None and err.location.line == 3
    assert err.location.path.name == "gristmill.toml"
    assert "parallelism" in err.hint


def test_unknown_key_in_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'name = "x"\n[duckdb]\nmemory = "1GB"\n'))
    assert info.value.location is not None and info.value.location.line == 3
    assert "memory_limit" in info.value.hint


def test_malformed_toml_has_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'name = "x"\nengine = duckdb\n'))
    assert info.value.location is not None and info.value.location.line == 2
    assert "malformed TOML" in info.value.message


def test_invalid_value_and_missing_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid value for 'engine'"):
        load_config(write(tmp_path, 'name = "x"\nengine = "oracle"\n'))
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        load_config(write(tmp_path, 'lake = "l"\n'))


@pytest.mark.parametrize("size", ["512MB", "8 GB", "1.5GiB", "80%", "64000000 bytes"])
def test_memory_limits_duckdb_takes_are_accepted(tmp_path: Path, size: str) -> None:
    config = load_config(write(tmp_path, f'name = "x"\n[duckdb]\nmemory_limit = "{size}"\n'))
    assert config.duckdb.memory_limit == size


@pytest.mark.parametrize("size", ["lots", "8", "150%", "1,5GB", "1 PB", "1KB", "99999999999TB"])
def test_a_memory_limit_duckdb_refuses_is_a_load_error_with_its_line(
    tmp_path: Path, size: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'name = "x"\n[duckdb]\nmemory_limit = "{size}"\n'))
    assert info.value.location is not None and info.value.location.line == 3
    if size in ("1KB", "99999999999TB"):  # sizes, but none DuckDB can run with
        assert info.value.message == (
            f"invalid value for 'duckdb.memory_limit': {size!r} is outside what DuckDB can "
            "run with: give 64MB to 1PB (or a share of the machine's memory, e.g. 80%)"
        )
        return
    assert info.value.message == (
        f"invalid value for 'duckdb.memory_limit': {size!r} is not a size: write a number and "
        "a unit (512MB, 8GB, 1.5GiB) or a share of the machine's memory (80%)"
    )
