"""Each key's type and range is declared once, next to its default, and checked from there."""

import re

import pytest
from omegaconf import OmegaConf

from jlmarl import algos
from jlmarl.config import ConfigError, load_config
from jlmarl.config_schema import Declaration, SchemaError, check, leaves, schema


@pytest.mark.parametrize(
    "text, good, bad, words",
    [
        ("int >= 1", [1, 7], [0, 1.5, True, "1", None], "an integer >= 1"),
        ("0 <= float <= 1", [0, 0.5, 1], [-0.1, 1.01, float("nan"), False], "a number in [0, 1]"),
        ("0 < float <= 1", [0.2, 1], [0, 2], "a number in (0, 1]"),
        ("float > 0 | null", [None, 3, 0.1], [0, -1, "x"], "a number > 0 or null"),
        ("one of soft, expected, max", ["soft", "max"], ["mean", None, 1], "one of soft, expected, max"),
        ("bool", [True, False], [0, 1, "true"], "true or false"),
        ("float >= 0", [0, float("inf")], [-1e-9], "a number >= 0"),
    ],
)
def test_declarations_accept_and_refuse_by_hand(text, good, bad, words):
    d = Declaration(text, "test")
    assert all(d.accepts(v) for v in good) and not any(d.accepts(v) for v in bad)
    assert d.describe() == words


def test_every_engine_algo_and_method_key_is_declared():
    """Every key a run reads outside env.* has a declaration (env keys: the reliability issue)."""
    declared = schema()
    for name in algos.ALGOS:
        overrides = [f"algo={name}", "env=matrix_three_state", "num_envs=16"]  # PQN: 16 minibatches
        cfg = OmegaConf.to_container(load_config(overrides), resolve=True)
        missing = [
            k for k in leaves(cfg) if not k.startswith("env.") and k not in declared and k != "algo.name"
        ]
        assert not missing, f"algo={name}: undeclared keys {missing}"


def test_check_names_the_key_what_it_must_be_and_what_it_got():
    with pytest.raises(SchemaError, match=r"^limarl.kl_warmup must be an integer >= 0, got -5$"):
        check({"limarl": {"kl_warmup": -5}})
    with pytest.raises(ConfigError, match=r"algo.adam_eps must be a number > 0, got -1e-08"):
        load_config(["algo.adam_eps=-1e-8"])
    with pytest.raises(ConfigError, match=r"algo.epsilon_anneal_steps must be an integer >= 0, got -3"):
        load_config(["algo.epsilon_anneal_steps=-3"])


def test_unknown_keys_are_named_with_the_closest_known_one():
    with pytest.raises(ConfigError, match=r"^unknown key batch_sise \(did you mean batch_size\?\)"):
        load_config(["batch_sise=3"])
    with pytest.raises(
        ConfigError, match=r"unknown key limarl.latentdim \(did you mean limarl.latent_dim\?\)"
    ):
        load_config(["algo=limarl", "limarl.latentdim=3"])
    # a real key of another method: named as such, never "did you mean" the same key
    with pytest.raises(ConfigError, match=r"^pqn.segment_length is not a setting of algo=qmix: it belongs"):
        load_config(["algo=qmix", "pqn.segment_length=8"])


def test_old_spellings_of_method_keys_still_work_with_a_warning(capsys):
    cfg = load_config(["algo=lsf_sac", "env=matrix_three_state", "algo.message_dim=5"])
    assert cfg.lsf_sac.message_dim == 5
    cfg = load_config(["algo=belief_i2q", "env=oracle", "algo.belief.samples=4"])
    assert cfg.belief_i2q.samples == 4
    err = capsys.readouterr().err
    assert "algo.message_dim is deprecated, use lsf_sac.message_dim" in err
    assert "algo.belief.samples is deprecated, use belief_i2q.samples" in err


def test_a_resume_repeating_an_old_spelling_is_the_same_run(tmp_path):
    args = ["algo=lsf_sac", "env=matrix_three_state", f"run_dir={tmp_path}"]
    OmegaConf.save(load_config([*args, "algo.message_beta=0.002"]), tmp_path / "config.yaml", resolve=True)
    assert load_config([*args, "algo.message_beta=0.002", "resume=true"]).lsf_sac.message_beta == 0.002
    with pytest.raises(ConfigError, match=r"lsf_sac.message_beta cannot change when resuming"):
        load_config([*args, "algo.message_beta=0.003", "resume=true"])


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(tmp_path, capsys):
    """A run started by an older jlmarl lacks the keys added since (here MMSA's free_nats
    and rec_hidden): resuming fills them with their defaults and says which."""
    args = ["algo=mmsa", "env=matrix_three_state", f"run_dir={tmp_path}"]
    cfg = OmegaConf.to_container(load_config([*args, "mmsa.horizon=2"]), resolve=True)
    del cfg["mmsa"]["free_nats"], cfg["mmsa"]["rec_hidden"]
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "config.yaml")
    resumed = load_config([*args, "resume=true"])
    assert (resumed.mmsa.free_nats, resumed.mmsa.rec_hidden, resumed.mmsa.horizon) == (0.0, "next", 2)
    err = capsys.readouterr().err
    assert "predates these settings; resuming with their defaults: " in err
    assert "mmsa.free_nats=0.0" in err and "mmsa.rec_hidden=next" in err
    OmegaConf.save(resumed, tmp_path / "config.yaml", resolve=True)
    load_config([*args, "resume=true"])
    assert "predates" not in capsys.readouterr().err  # nothing missing, nothing said


@pytest.mark.parametrize(
    "algo, key, section",
    [
        ("qmix", "normalize_state", "env"),  # LBF's state scaled: an older run keeps its raw one
        ("mmsa", "history_head", "mmsa"),  # MMSA's Q gained W_a h: an older run keeps its head
    ],
)
def test_a_run_saved_before_a_default_changed_resumes_with_its_old_value(
    algo, key, section, tmp_path, capsys
):
    """A new key whose default changed behaviour: resuming an older run fills in the value
    that reproduces what it ran with (VALUE_BEFORE_ADDED), not the new default."""
    args = [f"algo={algo}", "env=lbf_2s_8x8_2p_2f_coop", f"run_dir={tmp_path}"]
    cfg = OmegaConf.to_container(load_config(args), resolve=True)
    assert cfg[section][key] is True
    del cfg[section][key]
    OmegaConf.save(OmegaConf.create(cfg), tmp_path / "config.yaml")
    assert OmegaConf.select(load_config([*args, "resume=true"]), f"{section}.{key}") is False
    assert f"{section}.{key}=False" in capsys.readouterr().err


def test_every_env_key_is_declared():
    """Each env config's own keys (env.*) carry a declaration; engine or algo keys an env
    config overrides are declared where their defaults are."""
    import re
    from pathlib import Path

    from jlmarl.config_schema import CONFIG_DIR

    key = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")
    undeclared = []
    for path in sorted((CONFIG_DIR / "env").glob("*.yaml")):
        stack: list[tuple[int, str]] = []
        for line in Path(path).read_text().splitlines():
            m = key.match(line)
            if m is None or line.lstrip().startswith("#"):
                continue
            while stack and stack[-1][0] >= len(m["indent"]):
                stack.pop()
            full = ".".join([k for _, k in stack] + [m["key"]])
            if not m["rest"].split("#")[0].strip():
                stack.append((len(m["indent"]), m["key"]))
            elif full.startswith("env.") and not re.search(r"#\s*\[", m["rest"]):
                undeclared.append(f"{path.name}: {full}")
    assert not undeclared, undeclared
    assert {"env.max_steps", "env.host.timeout_s", "env.keep_prob"} <= set(schema())


def test_help_lists_the_groups_and_every_declared_key(capsys):
    from jlmarl.train import main

    main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m jlmarl.train")
    assert "pqn_vdn" in out and "smax_3m" in out
    assert "limarl.kl_warmup" in out and "an integer >= 0" in out


def test_a_key_given_twice_warns_and_the_last_wins(capsys):
    cfg = load_config(["seed=1", "seed=2"])
    assert cfg.seed == 2
    assert "seed is given twice (seed=1, then seed=2); the last wins" in capsys.readouterr().err


def test_a_bad_value_for_every_declared_key_is_refused_naming_the_key():
    """The fault suite's "bad values for every config key": each declared key, set to a value
    its declaration refuses, stops load_config with one sentence naming the key."""
    from jlmarl import envs

    declared = schema()
    where: dict[str, list[str]] = {}  # key -> the algo/env selection that has it
    selections = [[f"algo={a}", "env=matrix_three_state", "num_envs=16"] for a in algos.ALGOS]
    selections += [[f"env={e}"] for e in envs.names() if not e.startswith("smax_") or e == "smax_3m"]
    for sel in selections:
        try:
            cfg = OmegaConf.to_container(load_config(sel), resolve=True)
        except ConfigError:  # e.g. an env whose package is missing: its keys are checked elsewhere
            continue
        for key in leaves(cfg):
            where.setdefault(key, sel)
    checked = 0
    for key, decl in sorted(declared.items()):
        # resume/run_dir switch modes; env.name is checked against the registry ("unknown env=...")
        if key not in where or key in ("resume", "run_dir", "env.name"):
            continue
        bad = "123" if decl.accepts("text") else "not_a_number"
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)} must be "):
            load_config([*where[key], f"{key}={bad}"])
        checked += 1
    assert checked >= 100
