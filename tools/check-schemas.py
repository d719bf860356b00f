#!/usr/bin/env python3
"""Check pacer's JSON Schemas and the example repo.

    pip install jsonschema pyyaml
    tools/check-schemas.py [REPO ...]        # default: examples/

1. every schemas/*.schema.json is a valid draft 2020-12 schema, with a relative
   `$id` equal to its file name and no remote `$ref`s;
2. every YAML file of each given config repo validates against its schema
   (pacer.yaml, environments/*.yaml, apps/**/app.yaml, apps/**/env/*.yaml);
3. every YAML file starts with a `# yaml-language-server: $schema=` comment
   that points at the right schema file.

It checks the schemas only: merging, templates and Marathon's cross-field rules
are pacer's job (`pacer render`). Exit status 1 on any problem.
"""
import json
import os
import re
import sys

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "schemas")
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)\s*$")


def load_schemas():
    schemas, problems = {}, []
    for name in sorted(os.listdir(SCHEMAS)):
        if not name.endswith(".schema.json"):
            continue
        with open(os.path.join(SCHEMAS, name), encoding="utf-8") as f:
            schema = json.load(f)
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # SchemaError
            problems.append(f"schemas/{name}: not a valid 2020-12 schema: {e}")
        if schema.get("$id") != name:
            problems.append(f"schemas/{name}: $id is {schema.get('$id')!r}, want {name!r}")
        for ref in find_refs(schema):
            if "://" in ref or ref.startswith("//"):
                problems.append(f"schemas/{name}: remote $ref {ref!r}")
            else:
                target = ref.split("#", 1)[0]
                if target and not os.path.exists(os.path.join(SCHEMAS, target)):
                    problems.append(f"schemas/{name}: $ref to missing file {target!r}")
        schemas[name] = schema
    return schemas, problems


def find_refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("$ref", "$dynamicRef") and isinstance(v, str):
                yield v
            else:
                yield from find_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from find_refs(v)


def schema_for(rel):
    parts = rel.split("/")
    if rel == "pacer.yaml":
        return "pacer.schema.json"
    if len(parts) == 2 and parts[0] == "environments" and rel.endswith(".yaml"):
        return "environment.schema.json"
    if parts[0] == "apps" and "files" not in parts[1:-1]:
        if parts[-1] == "app.yaml" or (len(parts) >= 4 and parts[-2] == "env" and parts[-1].endswith(".yaml")):
            return "app.schema.json"
    return None


def check_repo(repo, validators):
    problems, count = [], 0
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames.sort()
        for fn in sorted(filenames):
            path = os.path.join(dirpath, fn)
            rel = os.path.relpath(path, repo).replace(os.sep, "/")
            schema_name = schema_for(rel)
            if schema_name is None:
                if fn.endswith((".yaml", ".yml")) and "/files/" not in f"/{rel}":
                    problems.append(f"{rel}: not a file pacer reads (misplaced?)")
                continue
            count += 1
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError as e:
                problems.append(f"{rel}: not UTF-8: {e}")
                continue
            first = text.split("\n", 1)[0]
            m = MODELINE.match(first)
            if not m:
                problems.append(f"{rel}:1: missing `# yaml-language-server: $schema=...` comment")
            else:
                target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
                want = os.path.join(SCHEMAS, schema_name)
                if os.path.realpath(target) != os.path.realpath(want):
                    problems.append(f"{rel}:1: $schema={m.group(1)} does not point at schemas/{schema_name}")
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                problems.append(f"{rel}: YAML error: {e}")
                continue
            if doc is None:
                doc = {}
            for err in sorted(validators[schema_name].iter_errors(doc), key=lambda e: list(e.absolute_path)):
                pointer = "/" + "/".join(str(p) for p in err.absolute_path)
                problems.append(f"{rel}: {pointer}: {err.message}")
    return problems, count


def main(argv):
    schemas, problems = load_schemas()
    registry = Registry().with_resources(
        (name, Resource.from_contents(s)) for name, s in schemas.items())
    validators = {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}
    repos = argv or [os.path.join(ROOT, "examples")]
    total = 0
    for repo in repos:
        p, n = check_repo(repo, validators)
        problems += p
        total += n
    for p in problems:
        print(p)
    print(f"{len(schemas)} schemas, {total} YAML files: {'OK' if not problems else f'{len(problems)} problem(s)'}",
          file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
