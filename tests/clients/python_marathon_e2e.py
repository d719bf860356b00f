#!/usr/bin/env python3
"""Drive `pacer sim` with the third-party Python `marathon` client (PyPI 0.13.0).

Usage: python_marathon_e2e.py http://127.0.0.1:PORT

Create, scale, update, watch the deployment finish, read events, delete —
asserting each step. Exits non-zero on the first failure.
"""
import collections
import collections.abc
import json
import sys
import threading
import time
import urllib.request

# marathon 0.13.0 still uses collections.Iterable, removed in Python 3.10.
collections.Iterable = collections.abc.Iterable

from marathon import MarathonClient  # noqa: E402
from marathon.models import MarathonApp, MarathonHealthCheck  # noqa: E402

APP_ID = "/e2e/python-client"


def step(msg):
    print(f"[python-marathon] {msg}", flush=True)


def wait_for(what, cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sim_settings(url, body):
    req = urllib.request.Request(
        url + "/_sim/settings", data=json.dumps(body).encode(), method="PUT",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1].rstrip("/")
    sim_settings(url, {"taskStartDelayMs": 20, "taskHealthyDelayMs": 20})
    client = MarathonClient([url])

    events = []
    attached = threading.Event()

    def listen():
        try:
            for ev in client.event_stream(raw=True):
                data = json.loads(ev)
                events.append(data)
                if data.get("eventType") == "event_stream_attached":
                    attached.set()
        except Exception as e:  # the stream ends when the simulator stops
            events.append({"eventType": "error", "error": repr(e)})

    threading.Thread(target=listen, daemon=True).start()
    assert attached.wait(10), "event_stream_attached never arrived"
    step("event stream attached")

    info = client.get_info()
    assert info.name == "marathon", info.name
    assert client.ping().strip() in (b"pong", "pong", b'"pong"'), client.ping()

    app = MarathonApp(cmd="python3 -m http.server $PORT0", cpus=0.1, mem=32, instances=1,
                      health_checks=[MarathonHealthCheck(protocol="HTTP", path="/")],
                      labels={"team": "e2e"})
    created = client.create_app(APP_ID, app)
    assert created.id == APP_ID, created.id
    assert created.deployments, "POST echo carries the deployment"
    step("created")
    wait_for("create deployment", lambda: not client.list_deployments())

    got = client.get_app(APP_ID)
    assert got.instances == 1 and got.tasks_running == 1 and got.tasks_healthy == 1, got.to_json()
    assert got.port_definitions and 10000 <= got.port_definitions[0].port <= 20000
    assert got.version and got.version_info.last_config_change_at
    config_version = got.version_info.last_config_change_at

    client.scale_app(APP_ID, instances=3)
    wait_for("scale deployment", lambda: not client.list_deployments())
    got = client.get_app(APP_ID)
    assert got.instances == 3 and got.tasks_healthy == 3, got.to_json()
    assert got.version_info.last_config_change_at == config_version, "scale keeps config version"
    step("scaled to 3")

    tasks = client.list_tasks(app_id=APP_ID)
    assert len(tasks) == 3 and all(t.state == "TASK_RUNNING" for t in tasks), [t.state for t in tasks]
    assert all(".instance-" in t.id for t in tasks)

    got.cmd = "python3 -m http.server $PORT0 --bind 0.0.0.0"
    result = client.update_app(APP_ID, got)
    dep_id = result["deploymentId"]
    deps = client.list_deployments()
    assert any(d.id == dep_id for d in deps) or not deps
    wait_for("update deployment", lambda: not client.list_deployments())
    got = client.get_app(APP_ID)
    assert got.cmd.endswith("--bind 0.0.0.0") and got.tasks_healthy == 3
    assert got.version_info.last_config_change_at != config_version, "config change bumps version"
    new_tasks = client.list_tasks(app_id=APP_ID)
    assert not ({t.id for t in new_tasks} & {t.id for t in tasks}), "rolling restart replaced all tasks"
    step("updated with rolling restart")

    apps = client.list_apps(label="team==e2e")
    assert [a.id for a in apps] == [APP_ID], [a.id for a in apps]

    client.delete_app(APP_ID)
    wait_for("delete deployment", lambda: not client.list_deployments())
    assert all(a.id != APP_ID for a in client.list_apps())
    step("deleted")

    wait_for("app_terminated_event", lambda: any(e.get("eventType") == "app_terminated_event" for e in events))
    types = {e.get("eventType") for e in events}
    for want in ["api_post_event", "deployment_info", "deployment_step_success", "deployment_success",
                 "status_update_event", "health_status_changed_event", "group_change_success"]:
        assert want in types, f"missing {want} in {sorted(t for t in types if t)}"
    success = [e for e in events if e.get("eventType") == "deployment_success" and e["id"] == dep_id]
    assert success, "deployment_success for the update"
    step(f"saw {len(events)} events")
    print("OK")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
