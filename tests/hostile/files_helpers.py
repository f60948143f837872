"""Tiny scenarios for the hostile file tests: analog schemes on the embedded images, no training."""

import json

from linksim.scenario import validate_scenario_dict

RAW = {"name": "hostile", "seed": 3, "dataset": {"name": "embedded", "test_size": 2},
       "snr_db": [0, 10], "rate": {"bandwidth_ratio": 0.1},
       "schemes": [{"type": "uncoded", "label": "A+B"}, {"type": "uncoded", "label": "A B"}],
       "plots": ["psnr_vs_snr", "examples"], "evaluation": {"example_images": 1}}

YAML = """\
name: {name}
seed: 3
dataset: {{name: embedded, test_size: 2}}
snr_db: [0, 10]
rate: {{bandwidth_ratio: 0.1}}
schemes:
  - {{type: uncoded, label: "A+B"}}
  - {{type: uncoded, label: "A B"}}
plots: [psnr_vs_snr, examples]
evaluation: {{example_images: 1}}
"""


def scenario(**changes):
    raw = json.loads(json.dumps(RAW))
    raw.update(changes)
    return validate_scenario_dict(raw, source="hostile.yaml")


def run(out, scen=None, **kw):
    from linksim.run.evaluation import run_scenario

    return run_scenario(scen or scenario(), out, progress=False, **kw)


def refuse_writes_in(monkeypatch, folder) -> None:
    """Make every ``Path.write_bytes`` directly in ``folder`` fail as a read-only folder would (root ignores
    file modes, so chmod cannot make a folder read-only for the tests)."""
    real = type(folder).write_bytes

    def refuse(self, data):
        if self.parent == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, data)

    monkeypatch.setattr(type(folder), "write_bytes", refuse)
