// Opens Partita's dashboard in Debian's chromium, headless, through playwright-core, waits for
// what test_dashboard.py expects to see, prints what the page shows as one JSON object, and saves
// a screenshot.
//
//   node dashboard_check.mjs URL GROUP MEMBERS SCREENSHOT
//
// Exits non-zero (with the reason on stderr) if the page does not show it within the deadline.

import { chromium } from "playwright-core";

const [url, group, members, screenshot] = process.argv.slice(2);
const DEADLINE_MS = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Without the background-networking flags chromium keeps trying to reach the internet.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const consoleErrors = [];
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  await page.goto(`${url}/#group=${encodeURIComponent(group)}`);

  const row = `tr[data-testid=group-row][data-group="${group}"]`;
  await page.waitForSelector(row, { timeout: DEADLINE_MS });
  await page.waitForFunction(
    (n) => document.querySelectorAll("tr[data-testid=member-row]").length === n,
    Number(members), { timeout: DEADLINE_MS });
  await page.waitForSelector("tr[data-testid=partition-row][data-skewed=true]", { timeout: DEADLINE_MS });
  await page.waitForSelector("li[data-testid=rebalance]", { timeout: DEADLINE_MS });
  await page.waitForSelector("svg[data-testid=lag-chart]", { timeout: DEADLINE_MS });
  await page.waitForSelector("tr[data-testid=topic-row]", { timeout: DEADLINE_MS });

  const seen = await page.evaluate(() => {
    const all = (selector) => [...document.querySelectorAll(selector)];
    return {
      groups: all("tr[data-testid=group-row]").map((r) => r.dataset.group),
      groupRowText: all("tr[data-testid=group-row]").map((r) => r.innerText),
      members: all("tr[data-testid=member-row]").map((r) => ({
        id: r.dataset.member, idle: r.dataset.idle === "true", text: r.innerText })),
      skewed: all("tr[data-testid=partition-row][data-skewed=true]").map((r) => ({
        topic: r.dataset.topic, partition: Number(r.dataset.partition),
        background: getComputedStyle(r.cells[0]).backgroundColor })),
      partitions: all("tr[data-testid=partition-row]").length,
      rebalances: all("li[data-testid=rebalance]").map((li) => ({
        cause: li.dataset.cause, text: li.innerText })),
      topics: all("tr[data-testid=topic-row]").map((r) => r.dataset.topic),
      summary: document.getElementById("group-summary").innerText,
    };
  });
  await page.screenshot({ path: screenshot, fullPage: true });
  seen.consoleErrors = consoleErrors;
  process.stdout.write(JSON.stringify(seen) + "\n");
} catch (error) {
  process.stderr.write(`dashboard check failed: ${error}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
