"""The README's dashboard screenshots (``docs/screenshots/*.png``), from a demo project.

    modelyard demo --dir /tmp/demo
    python benchmarks/ui_screenshots.py /tmp/demo [--traffic 600] [--out docs/screenshots]

Serves A/B traffic with feedback to the demo's model (production against the archived
v1.1.1, captured to the vault: the serving page's figures), then starts the dashboard and
takes one full-page screenshot of each page with Debian's chromium driven by Playwright
(``/usr/bin/chromium``; Playwright's own browser download is not used).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve_traffic(yard: Any, name: str, project: Path, count: int) -> None:
    import pandas as pd
    from fastapi.testclient import TestClient

    from modelyard.serving.app import create_app

    frame = pd.read_csv(project / "data" / "prepared" / "test.csv")
    labels = frame.pop("churn").tolist()
    frame = frame.drop(columns=["customer_id"])
    if "contract" not in frame:  # the demo's last version dropped it; the served ones want it
        kinds = ["month-to-month", "one-year", "two-year"]
        frame["contract"] = [kinds[i % 3] for i in range(len(frame))]
    app = create_app(yard, name, ab={"production": 40, "v1.1.1": 60}, capture_rate=1.0,
                     poll_interval=0, token_env=None)
    with TestClient(app) as client:
        for i in range(count):
            row = i % len(frame)
            record = frame.iloc[row].to_dict()
            reply = client.post("/predict", json={"instances": [record]},
                                headers={"X-Routing-Key": f"customer-{i}"})
            if reply.status_code == 200:
                client.post("/feedback", json={"request_id": reply.json()["request_id"],
                                               "label": int(labels[row])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--traffic", type=int, default=600)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "docs" / "screenshots")
    args = parser.parse_args()
    project = args.project.resolve()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import uvicorn
    from playwright.sync_api import sync_playwright

    from modelyard import Yard
    from modelyard.ui.app import create_app
    from tests.support.devstack import free_port

    os.chdir(project)  # a script, not the library: the project's own config is found here
    yard = Yard()
    name = sorted(m.name for m in yard.ctx.reads.list_models())[0]
    if args.traffic:
        serve_traffic(yard, name, project, args.traffic)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(yard.settings), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    pages = {"overview": "/", "model": f"/model?name={name}&a=v1.0.0&b=v2.0.0",
             "version": f"/version?name={name}&ref=production", "audit": "/audit",
             "incidents": "/incidents", "serving": f"/serving?name={name}&since=1h"}
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        for label, path in pages.items():
            answer = page.goto(base + path)
            assert answer is not None and answer.status == 200, (path, answer)
            page.screenshot(path=str(args.out / f"{label}.png"), full_page=True)
            print(f"{label}: {args.out / f'{label}.png'}")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
