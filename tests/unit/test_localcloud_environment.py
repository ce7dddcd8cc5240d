"""`localcloud exec`'s environment comes from the template: a function's layers are their ContentUri folders, whatever
they are called (no project's layer paths are assumed)."""

from __future__ import annotations

from pathlib import Path

from localcloud.cloud import LocalCloud
from localcloud.runtime import function_specs
from localcloud.template import Template

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  CodeLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: deps/code
  AssetLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: assets
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.11
      Layers: [!Ref CodeLayer, !Ref AssetLayer]
      Environment:
        Variables:
          WEIGHTS: /opt/weights/small
          MISSING: /opt/nowhere
          PLAIN: value
  Bare:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.11
      Environment:
        Variables:
          WEIGHTS: /opt/weights/small
"""


def test_layer_folders_and_opt_paths_come_from_the_template(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "deps" / "code" / "python").mkdir(parents=True)
    (tmp_path / "assets" / "weights" / "small").mkdir(parents=True)
    cloud = LocalCloud(tmp_path / "template.yaml", state_dir=tmp_path / "state", endpoint_url="http://127.0.0.1:9")
    cloud.tpl = Template.load(tmp_path / "template.yaml", region="us-east-1", endpoint_url=cloud.endpoint_url)
    cloud.specs = function_specs(cloud.tpl)

    env = cloud.environment("Fn")
    assert env["PYTHONPATH"] == str((tmp_path / "deps" / "code" / "python").resolve())
    assert env["WEIGHTS"] == str((tmp_path / "assets" / "weights" / "small").resolve())
    assert env["MISSING"] == "/opt/nowhere" and env["PLAIN"] == "value"  # in no layer: left as Lambda would see it
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"

    bare = cloud.environment("Bare")
    assert bare["PYTHONPATH"] == "" and bare["WEIGHTS"] == "/opt/weights/small"
