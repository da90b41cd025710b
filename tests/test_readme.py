"""The README's two quick-start commands and what CI runs must agree."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", section)


def test_quick_start_has_exactly_two_commands():
    cmds = _quick_start_commands()
    assert len(cmds) == 2, cmds
    assert "focuswatch demo" in cmds[0]
    assert "pytest" in cmds[1] and ".[test]" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_cmd = _quick_start_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    runs = [line for line in ci if line.strip() and not line.lstrip().startswith("#")]
    assert runs[-1].strip() == test_cmd.strip()
    assert any("FOCUSWATCH_REQUIRE_SIRIL=1" in line for line in ci)
    assert any("apt-get install -y --no-install-recommends" in line for line in ci)


def test_console_script_is_declared():
    py = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'focuswatch = "focuswatch.cli:main"' in py


def test_readme_configuration_example_loads(tmp_path):
    """The TOML shown in the README is a valid configuration for every section it uses."""
    from focuswatch.config import load_config, section_to_dataclass
    from focuswatch.policy import PolicyConfig
    from focuswatch.triggers import TriggerConfig

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    toml = re.findall(r"```toml\n(.+?)\n```", text, re.S)[0]
    path = tmp_path / "focuswatch.toml"
    path.write_text(toml, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.rig.f_ratio == 5.0 and cfg.rig.obstruction == 0.33
    policy = section_to_dataclass(PolicyConfig, cfg.policy, "policy")
    assert policy.defocus_limit_cfz == 0.4 and policy.max_interval_min == 90
    trig = section_to_dataclass(TriggerConfig, cfg.trigger, "trigger")
    assert trig.nina_api is False
