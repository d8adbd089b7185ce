from pathlib import Path

import pytest

from gristmill.definitions.loader import load_project
from gristmill.definitions.objects import StepKind
from gristmill.errors import DefinitionError, GraphError, ProjectNotFoundError, SelectionError
from tests.conftest import write_project


def test_loads_sources_sql_and_python_steps(tmp_path: Path) -> None:
    module = """
import pyarrow as pa
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR"})
@gm.table
def enriched(per_user: pa.Table) -> pa.Table:
    return per_user
"""
    root = write_project(tmp_path, module=module, sql={"per_user.sql": "select id from txns"})
    graph = load_project(root).graph
    assert graph.order == ("txns", "per_user", "enriched")
    assert graph.nodes["per_user"].dependencies == ("txns",)
    assert graph.nodes["enriched"].kind is StepKind.PYTHON
    assert graph.downstream["txns"] == ("per_user",)


def test_project_found_from_subfolder(project: Path) -> None:
    assert load_project(project / "sql").root == project


def test_no_project(tmp_path: Path) -> None:
    with pytest.raises(ProjectNotFoundError):
        load_project(tmp_path)


def test_unknown_reference_names_file_and_suggests(tmp_path: Path) -> None:
    root = write_project(tmp_path, sql={"per_user.sql": "select * from txn"})
    with pytest.raises(GraphError) as info:
        load_project(root)
    assert "'per_user' reads 'txn'" in info.value.message
    assert info.value.location is not None and info.value.location.path.name == "per_user.sql"
    assert "'txns'" in info.value.hint


def test_cycle_is_an_error(tmp_path: Path) -> None:
    root = write_project(tmp_path, sql={"a.sql": "select * from b", "b.sql": "select * from a"})
    with pytest.raises(GraphError, match="cycle"):
        load_project(root)


def test_duplicate_names(tmp_path: Path) -> None:
    module = """
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR"})
per_user = gm.table("per_user", sql="select id from txns")
"""
    root = write_project(tmp_path, module=module, sql={"per_user.sql": "select id from txns"})
    with pytest.raises(GraphError, match="defined twice"):
        load_project(root)


def test_sql_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    root = write_project(tmp_path, sql={"bad.sql": "select id,\n  from (( txns\n"})
    with pytest.raises(DefinitionError) as info:
        load_project(root)
    assert info.value.location is not None
    assert info.value.location.path.name == "bad.sql"
    assert info.value.location.line == 2


def test_an_unclosed_quote_in_a_sql_file_is_a_definition_error(tmp_path: Path) -> None:
    root = write_project(tmp_path, sql={"bad.sql": "select 'id from txns\n"})
    with pytest.raises(DefinitionError, match="SQL syntax error") as info:
        load_project(root)
    assert info.value.location is not None and info.value.location.path.name == "bad.sql"


def test_python_module_error_names_line(tmp_path: Path) -> None:
    root = write_project(tmp_path, module="import gristmill as gm\n\nx = 1 / 0\n", sql={})
    with pytest.raises(DefinitionError) as info:
        load_project(root)
    assert "ZeroDivisionError" in info.value.message
    assert info.value.location is not None and info.value.location.line == 3


def test_check_on_undeclared_source_column(tmp_path: Path) -> None:
    module = """
import gristmill as gm
txns = gm.source("txns", "data/*.csv", columns={"id": "VARCHAR"}, checks=[gm.not_null("amount")])
"""
    root = write_project(tmp_path, module=module, sql={})
    with pytest.raises(DefinitionError, match="does not declare: amount"):
        load_project(root)


def test_selection_syntax(project: Path) -> None:
    graph = load_project(project).graph
    assert graph.select(["per_user"]) == ("per_user",)
    assert graph.select(["+per_user"]) == ("txns", "per_user")
    assert graph.select(["per_user+"]) == ("per_user", "top_users")
    assert graph.select(["+top_users"]) == ("txns", "per_user", "top_users")
    assert graph.select([]) == graph.order
    with pytest.raises(SelectionError, match="names nothing"):
        graph.select(["+nope"])


STRAY = """
from pathlib import Path
import gristmill as gm
Path(__file__).with_name("IMPORTED").write_text("the stray script ran")
stray = gm.source("stray", "data/*.csv", columns={"id": "VARCHAR"})
"""


def test_only_the_modules_the_config_names_are_imported(tmp_path: Path, cli) -> None:
    root = write_project(tmp_path / "p")
    (root / "helper.py").write_text(STRAY)
    (root / "more.py").write_text(STRAY.replace("stray", "more").replace("IMPORTED", "MORE"))
    assert "stray" not in load_project(root).graph.nodes  # default: pipeline.py alone
    assert cli("status", "--project", str(root)).code == 0
    assert not (root / "IMPORTED").exists()
    (root / "gristmill.toml").write_text('name = "t"\nmodules = ["pipeline.py", "more.py"]\n')
    nodes = load_project(root).graph.nodes
    assert {"txns", "more"} <= set(nodes) and "stray" not in nodes
    assert (root / "MORE").exists() and not (root / "IMPORTED").exists()


def test_without_pipeline_py_a_project_is_its_sql_files(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", sql={"one.sql": "select 1 as x"})
    (root / "pipeline.py").unlink()
    (root / "helper.py").write_text(STRAY)
    assert load_project(root).graph.order == ("one",)
    assert not (root / "IMPORTED").exists()


def test_a_listed_module_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", toml='name = "t"\nmodules = ["pipline.py"]\n')
    with pytest.raises(DefinitionError, match="module 'pipline.py' listed in `modules`"):
        load_project(root)


def test_init_writes_the_modules_it_imports(tmp_path: Path) -> None:
    from gristmill.definitions.config import load_config
    from gristmill.workspace.init import init_project

    init_project(tmp_path / "demo", example="churn", scale="tiny", seed=1)
    assert load_config(tmp_path / "demo").modules == ["sources.py", "pipeline.py"]


@pytest.mark.parametrize(
    ("file", "says"),
    [
        ("txns__quarantine.sql", "ends like a table gristmill keeps for itself"),
        ("churn__prediction_log.sql", "ends like a table gristmill keeps for itself"),
        ("bad name.sql", "invalid name 'bad name'"),
    ],
)
def test_sql_files_with_names_no_table_may_have_are_refused(
    tmp_path: Path, file: str, says: str
) -> None:
    root = write_project(tmp_path / "p", sql={file: "select 1 as x\n"})
    with pytest.raises(DefinitionError, match=says) as caught:
        load_project(root)
    assert caught.value.location is not None and caught.value.location.path.name == file
