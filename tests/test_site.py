"""The results site (results/site/): regenerated and diffed, then opened in a real headless Chromium.

The browser tests need Debian's chromium and chromium-driver packages and selenium (`.ci/run`
installs them); without them they skip and say how to enable them. Each browser test saves a
screenshot of what it checked in its temporary folder (the path is printed; pytest -s shows it).
"""

import csv
import filecmp
import io
import json
import shutil
import time
from pathlib import Path

import pytest

from harness import catalog
from harness.report import site
from tests.conftest import REPO

RESULTS = REPO / "results"
SITE = RESULTS / "site"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if Path(p).exists()), None)
VENDORED = "assets/plotly.min.js"
ENABLE = "apt-get install -y chromium chromium-driver && pip install selenium (as .ci/run does)"


def test_the_published_site_is_up_to_date(tmp_path):
    """`python -m harness publish` wrote results/site/ from the run files; building again gives the same files."""
    fresh = tmp_path / "site"
    site.build(RESULTS, fresh)
    comparison = filecmp.dircmp(SITE, fresh)

    def differences(c, prefix=""):
        out = [f"{prefix}{n}" for n in c.left_only + c.right_only + c.diff_files + c.funny_files]
        for name, sub in c.subdirs.items():
            out += differences(sub, f"{prefix}{name}/")
        return out
    # plotly.js is the installed plotly package's own file, copied as it is: the site's pages are ours,
    # its bytes are not (another plotly build differs without the site being stale)
    stale = [d for d in differences(comparison) if d != VENDORED]
    assert stale == [], "results/site/ is stale: run python -m harness publish"
    assert "plotly" in (SITE / VENDORED).read_text(encoding="utf-8")[:2000].lower()
    pages = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*.html"))
    jobs = [f"jobs/{'--'.join(f.relative_to(RESULTS).parts)}.html" for f in catalog.job_folders(RESULTS)]
    assert set(jobs) <= set(pages) and {"index.html", "explorer.html", "hardware.html", "benchmarks.html"} <= set(pages)


def test_a_build_that_fails_part_way_leaves_the_previous_site_whole(tmp_path):
    """The site is built beside the old one and swapped in: a build that raises after writing some
    files (here a job folder outside the results root, found only once the assets are written) leaves
    the previous site as it was and no half-built folder."""
    root = tmp_path / "results"
    root.mkdir()
    built = site.build(root)
    assert built and all(p.is_file() and p.is_relative_to(root / site.SITE) for p in built)
    before = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    stray = catalog.Job(tmp_path / "elsewhere" / "hw" / "data" / "job", [], None, 0)
    with pytest.raises(ValueError):
        site.build(root, jobs=[stray])
    after = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in root.iterdir()) == [site.SITE]


def test_every_variant_of_a_job_is_one_point_at_its_chosen_rate_and_the_front_is_stats_pareto_front():
    folder = next(f for f in catalog.job_folders(RESULTS) if f.name == "adr")
    job = catalog.read_job(folder)
    records = job.records
    points = site.variant_points(folder, RESULTS, records)
    by_variant = {}
    for r in records:
        by_variant.setdefault(site.methods.variant_label(r["spec"]), []).append(r)
    assert sorted(p["variant"] for p in points) == sorted(by_variant)
    for p in points:  # the mean over the variant's seeds, with the tables' interval
        runs = by_variant[p["variant"]]
        assert sorted(p["seeds"]) == sorted(r["spec"]["seed"] for r in runs)
        assert p["spearman"] == pytest.approx(sum(r["quality"]["spearman"] for r in runs) / len(runs))
        assert len(runs) == 1 or p["spearman_ci"][0] < p["spearman"] < p["spearman_ci"][1]
    runs = site.tuning_runs(job, RESULTS)
    assert {r["id"].rsplit("/", 1)[1] for r in runs if r["chosen"]} == {r["run_id"] for r in records}
    front = site.front_of(points, "train_wall_s", "spearman")
    trained = [p for p in points if p["train_wall_s"] is not None]
    best = max(trained, key=lambda p: p["spearman"])
    fastest = min(trained, key=lambda p: p["train_wall_s"])
    assert best["id"] in front and fastest["id"] in front


# --- in the browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and DRIVER):
        pytest.skip(f"no Chromium here; to run the browser tests: {ENABLE}")
    webdriver = pytest.importorskip("selenium.webdriver", reason=f"selenium is not installed; {ENABLE}")
    from selenium.webdriver.chrome.service import Service
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.downloads = downloads
    driver.shots = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots in {driver.shots}")
    yield driver
    driver.quit()


def _open(driver, page: Path):
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get_log("browser")
    driver.get(page.as_uri())
    deadline = time.monotonic() + 60
    while driver.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, f"{page} did not finish loading"
        time.sleep(0.05)


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _wait_for(driver, script: str, what: str):
    deadline = time.monotonic() + 60
    while not driver.execute_script(script):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_every_page_loads_without_errors_or_requests_outside_the_site(browser):
    pages = sorted(SITE.rglob("*.html"))
    assert len(pages) >= 5
    site_root = SITE.resolve().as_uri() + "/"
    for page in pages:
        _open(browser, page)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], f"{page.relative_to(SITE)}: {errors}"
        outside = [u for u in _requests(browser) if not (u.startswith(site_root) or u.startswith(("data:", "blob:")))]
        assert outside == [], f"{page.relative_to(SITE)} requested {outside}"
    browser.save_screenshot(str(browser.shots / "last-page.png"))


def _explorer_page():
    return SITE / "explorer.html"


def _marker_points(driver) -> dict:
    return driver.execute_script(
        "const d = document.getElementById('explorer').data;"
        "const m = d.filter(t => t.mode === 'markers' && t.meta !== 'runs');"
        "return {n: m.reduce((a, t) => a + t.x.length, 0), ys: m.flatMap(t => t.y),"
        "        ids: m.flatMap(t => t.customdata)};")


def test_the_explorer_draws_one_point_per_variant_and_redraws_on_new_axes(browser):
    _open(browser, _explorer_page())
    _wait_for(browser, "return window.EXPLORER_STATE !== undefined", "the explorer")
    points = browser.execute_script("return window.EXPLORER.points")
    dataset = browser.execute_script("return document.getElementById('dataset').value")
    assert dataset == "dating-v2"  # one dataset at a time: quality on one test set does not compare to another's
    timed = [p for p in points if p["train_wall_s"] is not None and p["spearman"] is not None
             and p["dataset"] == dataset]
    drawn = _marker_points(browser)
    assert drawn["n"] == len(timed) and sorted(drawn["ids"]) == sorted(p["id"] for p in timed)
    browser.save_screenshot(str(browser.shots / "explorer-spearman.png"))
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", "y-axis")).select_by_value("auc_roc")
    _wait_for(browser, "return document.getElementById('explorer').layout.yaxis.title.text.startsWith('AUC')",
              "the redraw")
    redrawn = _marker_points(browser)
    by_id = {p["id"]: p for p in points}
    assert redrawn["ys"] == [by_id[i]["auc_roc"] for i in redrawn["ids"]]
    browser.save_screenshot(str(browser.shots / "explorer-auc.png"))
    browser.find_element("id", "show-runs").click()  # every single run, on request, off the front
    _wait_for(browser, "return window.EXPLORER_STATE.runs.length > 0", "the tuning runs")
    runs = browser.execute_script("return window.EXPLORER.runs")
    shown = [r for r in runs if r["train_wall_s"] is not None and r["auc_roc"] is not None and r["dataset"] == dataset]
    assert sorted(browser.execute_script("return window.EXPLORER_STATE.runs")) == sorted(r["id"] for r in shown)
    assert len(shown) > drawn["n"] and any(not r["chosen"] for r in shown)  # the rejected rates are there too
    assert set(browser.execute_script("return window.EXPLORER_STATE.front")) <= set(by_id)
    browser.save_screenshot(str(browser.shots / "explorer-runs.png"))


@pytest.mark.parametrize(("x", "y"), [("train_wall_s", "spearman"), ("peak_memory_mib", "forgetting"),
                                      ("energy_wh", "f1")])
def test_the_drawn_front_is_stats_pareto_front(browser, x, y):
    _open(browser, _explorer_page())
    _wait_for(browser, "return window.EXPLORER_STATE !== undefined", "the explorer")
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element("id", "x-axis")).select_by_value(x)
    Select(browser.find_element("id", "y-axis")).select_by_value(y)
    points = [p for p in browser.execute_script("return window.EXPLORER.points") if p["dataset"] == "dating-v2"]
    drawn = browser.execute_script("return window.EXPLORER_STATE.front")
    assert sorted(drawn) == sorted(site.front_of(points, x, y)) and drawn
    browser.save_screenshot(str(browser.shots / f"front-{x}-{y}.png"))


def test_the_csv_download_holds_the_shown_runs(browser):
    _open(browser, _explorer_page())
    _wait_for(browser, "return window.EXPLORER_STATE !== undefined", "the explorer")
    boxes = browser.find_elements("css selector", "input.hw")
    if len(boxes) > 1:
        boxes[0].click()  # filter out the first machine: the download must follow the selection
    shown = browser.execute_script("return window.EXPLORER_STATE.shown")
    for old in browser.downloads.glob("*"):
        old.unlink()
    browser.find_element("id", "download").click()
    target = browser.downloads / "pareto-selection.csv"
    deadline = time.monotonic() + 30
    while not (target.exists() and target.stat().st_size > 0):
        assert time.monotonic() < deadline, "the CSV was not downloaded"
        time.sleep(0.05)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [r["id"] for r in rows] == shown
    browser.save_screenshot(str(browser.shots / "explorer-download.png"))
    shutil.copyfile(target, browser.shots / "pareto-selection.csv")
