// The dashboard: every panel reads one API endpoint and marks itself data-ready="true" once it drew
// real data (the browser test waits for those marks).
"use strict";

const FONT = '"Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif';
const charts = {};

function chart(id) {
  if (!charts[id]) {
    charts[id] = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
  }
  return charts[id];
}

function draw(id, option) {
  chart(id).setOption({ textStyle: { fontFamily: FONT }, animation: false, ...option }, true);
}

function ready(panel, count) {
  const el = document.getElementById(panel);
  el.dataset.count = String(Number(el.dataset.count || 0) + count);
  if (count > 0) el.dataset.ready = "true";
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function wan(x) {
  return x >= 1e4 ? (x / 1e4).toFixed(1) + "万" : Math.round(x).toLocaleString("zh-CN");
}

function pct(x) {
  return x == null ? "–" : (100 * x).toFixed(1) + "%";
}

async function get(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.json()).message}`);
  return r.json();
}

async function overview() {
  const o = await get("/overview");
  document.getElementById("goal").textContent = "项目目标：" + o.goal;
  document.getElementById("kpi-dau").textContent = o.dau_up.toFixed(1);
  document.getElementById("kpi-views").textContent = wan(o.avg_daily_views);
  document.getElementById("kpi-watch").textContent = (o.avg_watch_seconds / 60).toFixed(1) + " 分钟";
  document.getElementById("kpi-counts").textContent = `${o.videos} / ${o.ups}`;
  document.getElementById("watch-note").textContent = "平均观看时长代理：" + o.watch_proxy;
  draw("chart-daily", {
    title: { text: "每日活跃UP主与播放量", textStyle: { fontSize: 13 } },
    tooltip: { trigger: "axis" },
    legend: { data: ["活跃UP主", "播放量"], right: 0 },
    grid: { left: 50, right: 60, top: 40, bottom: 25 },
    xAxis: { type: "category", data: o.daily.map((d) => d.day) },
    yAxis: [{ type: "value", name: "UP主" }, { type: "value", name: "播放" }],
    series: [
      { name: "活跃UP主", type: "bar", data: o.daily.map((d) => d.dau_up), itemStyle: { color: "#00a1d6" } },
      { name: "播放量", type: "line", yAxisIndex: 1, data: o.daily.map((d) => d.views), itemStyle: { color: "#fb7299" } },
    ],
  });
  ready("panel-overview", o.videos);
}

async function hotList() {
  const h = document.getElementById("hot-horizon").value;
  const data = await get(`/hot?horizon=${h}&n=12`);
  document.getElementById("hot-body").innerHTML = data.items
    .map(
      (it) => `<tr><td>${it.rank}</td><td title="${esc(it.bvid)}">${esc(it.title || it.bvid)}</td>` +
        `<td>${esc(it.category)}</td><td>${pct(it.prob)}</td>` +
        `<td><span class="tag lv-${esc(it.level)}">${esc(it.level)}</span></td></tr>`,
    )
    .join("");
  document.getElementById("hot-updated").textContent = `● 自动刷新 ${new Date().toLocaleTimeString("zh-CN")}（共 ${data.size} 个）`;
  ready("panel-hot", data.items.length);
}

function liveStream() {
  const list = document.getElementById("stream-list");
  const source = new EventSource("/stream?from_beginning=true");
  source.addEventListener("prediction", (e) => {
    const p = JSON.parse(e.data);
    const li = document.createElement("li");
    const title = (p.video && p.video.title) || p.bvid;
    li.textContent = `${p.horizon} ${title} → ${p.status === "scored" ? pct(p.prob) + " " + p.level : p.status}`;
    list.prepend(li);
    while (list.children.length > 8) list.lastChild.remove();
    document.getElementById("panel-hot").dataset.stream = "true";
  });
}

async function predict(ev) {
  if (ev) ev.preventDefault();
  const form = new FormData(document.getElementById("predict-form"));
  const body = {};
  for (const [k, v] of form.entries()) body[k] = Number(v);
  const r = await fetch("/predict", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const out = await r.json();
  document.getElementById("predict-result").textContent = r.ok
    ? `预测: ${out.prediction ? "会上热门" : "不会上热门"}  置信度: ${out.confidence.toFixed(2)}  等级: ${out.level}  播放区间: ${out.play_range ?? "–"}\n模型: ${out.model} ${out.model_version}`
    : `错误 ${r.status}: ${out.message}`;
  if (r.ok) ready("panel-predict", 1);
}

async function upSearch(ev) {
  if (ev) ev.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById("up-filter")).entries()) if (v !== "") params.set(k, v);
  params.set("limit", "12");
  const data = await get("/ups?" + params);
  document.getElementById("up-body").innerHTML = data.items
    .map(
      (u) => `<tr data-mid="${esc(u.mid)}"><td>${esc(u.mid)}</td><td>${esc(u.name)}</td><td>${wan(u.followers)}</td>` +
        `<td>${u.videos}</td><td>${wan(u.total_view)}</td><td>${pct(u.engagement_rate)}</td></tr>`,
    )
    .join("");
  document.getElementById("up-total").textContent = `共 ${data.total} 位UP主符合条件`;
  document.querySelectorAll("#up-body tr").forEach((tr) => tr.addEventListener("click", () => upDetail(tr.dataset.mid)));
  if (data.items.length) await upDetail(data.items.find((u) => u.videos > 0)?.mid || data.items[0].mid);
}

async function upDetail(mid) {
  const [c, h] = await Promise.all([get(`/ups/${mid}`), get(`/ups/${mid}/history`)]);
  document.getElementById("up-card").innerHTML =
    `<h3>${esc(c.name)} <span class="note">UID ${esc(c.mid)}</span></h3>` +
    `<p>粉丝 <b>${wan(c.followers)}</b> · 投稿 <b>${c.archive_count ?? c.videos}</b> · 观测播放 <b>${wan(c.total_view)}</b> · ` +
    `点赞率 <b>${pct(c.like_rate)}</b> · 互动率 <b>${pct(c.engagement_rate)}</b> · 平均时长 <b>${(c.avg_duration / 60).toFixed(1)}</b> 分钟</p>` +
    `<table class="table"><thead><tr><th>最新视频</th><th>分区</th><th>发布时间</th><th>播放</th><th>互动率</th></tr></thead><tbody>` +
    c.latest_videos
      .map((v) => `<tr><td>${esc(v.title)}</td><td>${esc(v.category)}</td><td>${esc(v.pub_time.slice(0, 16).replace("T", " "))}</td><td>${wan(v.view)}</td><td>${pct(v.engagement_rate)}</td></tr>`)
      .join("") +
    "</tbody></table>";
  const followers = Object.fromEntries(h.followers.map((f) => [f.day, f.followers]));
  const days = [...new Set([...h.days.map((d) => d.day), ...Object.keys(followers)])].sort();
  const byDay = Object.fromEntries(h.days.map((d) => [d.day, d]));
  draw("chart-up-history", {
    title: { text: `${c.name || c.mid} 的历史趋势：粉丝、播放、互动率`, textStyle: { fontSize: 13 } },
    tooltip: { trigger: "axis" },
    legend: { data: ["粉丝数", "累计播放", "互动率"], right: 0 },
    grid: { left: 90, right: 60, top: 40, bottom: 25 },
    xAxis: { type: "category", data: days },
    yAxis: [{ type: "value", name: "数量" }, { type: "value", name: "互动率", axisLabel: { formatter: (v) => pct(v) } }],
    series: [
      { name: "粉丝数", type: "line", connectNulls: true, data: days.map((d) => followers[d] ?? null), symbolSize: 10 },
      { name: "累计播放", type: "bar", data: days.map((d) => byDay[d]?.cumulative_views ?? null) },
      { name: "互动率", type: "line", yAxisIndex: 1, data: days.map((d) => byDay[d]?.engagement_rate ?? null) },
    ],
  });
  ready("panel-ups", c.latest_videos.length);
}

async function engagement() {
  const e = await get("/ups/engagement");
  const point = (p) => ({ value: [p.log_followers, p.engagement_rate, p.total_view], name: p.name || p.mid });
  draw("chart-scatter", {
    title: { text: "粉丝量 vs 互动率（红色为潜力UP主）", textStyle: { fontSize: 13 } },
    tooltip: { formatter: (x) => `${esc(x.name)}<br>粉丝 10^${x.value[0].toFixed(2)}<br>互动率 ${pct(x.value[1])}` },
    legend: { data: ["潜力UP主", "其他UP主"], right: 0 },
    grid: { left: 60, right: 20, top: 40, bottom: 40 },
    xAxis: { type: "value", name: "log10(粉丝+1)", nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "value", name: "互动率", axisLabel: { formatter: (v) => pct(v) } },
    series: [
      { name: "潜力UP主", type: "scatter", data: e.points.filter((p) => p.potential).map(point), itemStyle: { color: "#f5222d" } },
      { name: "其他UP主", type: "scatter", data: e.points.filter((p) => !p.potential).map(point), itemStyle: { color: "#00a1d6", opacity: 0.6 } },
    ],
  });
  draw("chart-box", {
    title: { text: "各粉丝段互动率箱线图", textStyle: { fontSize: 13 } },
    tooltip: { trigger: "item" },
    grid: { left: 60, right: 20, top: 40, bottom: 45 },
    xAxis: { type: "category", data: e.tiers.map((t, i) => `${t}\n(${e.counts[i]}人)`) },
    yAxis: { type: "value", name: "互动率", axisLabel: { formatter: (v) => pct(v) } },
    series: [{ type: "boxplot", data: e.boxes, itemStyle: { color: "#e6f7ff", borderColor: "#00a1d6" } }],
  });
  ready("panel-ups", e.points.length);
}

async function clusters() {
  const c = await get("/ups/clusters?k=4");
  const colors = ["#00a1d6", "#fb7299", "#faad14", "#52c41a", "#722ed1", "#13c2c2"];
  draw("chart-clusters", {
    title: { text: "UP主聚类分布", textStyle: { fontSize: 13 } },
    tooltip: { formatter: (x) => esc(x.data.name) },
    legend: { data: c.clusters.map((k) => k.name + " #" + k.cluster), right: 0, top: 20, type: "scroll" },
    grid: { left: 60, right: 20, top: 60, bottom: 40 },
    xAxis: { type: "value", name: "log10(粉丝+1)", nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "value", name: "log10(播放+1)" },
    series: c.clusters.map((k, i) => ({
      name: k.name + " #" + k.cluster,
      type: "scatter",
      itemStyle: { color: colors[i % colors.length] },
      data: c.points.filter((p) => p.cluster === k.cluster).map((p) => ({ value: [p.log_followers, p.log_view], name: p.name || p.mid })),
    })),
  });
  document.getElementById("cluster-list").innerHTML = c.clusters
    .map((k, i) => `<li><b style="color:${colors[i % colors.length]}">${esc(k.name)} #${k.cluster}</b>（${k.size} 人）：${esc(k.description)}</li>`)
    .join("");
  ready("panel-ups", c.clusters.length);
}

async function heatmap() {
  const h = await get("/analysis/heatmap");
  draw("chart-heatmap", {
    title: { text: "播放热度热力图（发布小时 × 星期，平均播放）", textStyle: { fontSize: 13 } },
    tooltip: { formatter: (x) => `${h.weekdays[x.value[1]]} ${x.value[0]}时<br>平均播放 ${wan(x.value[2])}<br>视频 ${x.value[3]} 个` },
    grid: { left: 50, right: 20, top: 40, bottom: 60 },
    xAxis: { type: "category", data: h.hours.map((x) => x + "时"), splitArea: { show: true } },
    yAxis: { type: "category", data: h.weekdays, splitArea: { show: true } },
    visualMap: { min: 0, max: h.max || 1, calculable: true, orient: "horizontal", left: "center", bottom: 0, inRange: { color: ["#e6f7ff", "#00a1d6", "#fb7299"] } },
    series: [{ type: "heatmap", data: h.cells }],
  });
  ready("panel-analysis", h.cells.length);
}

async function wordcloud() {
  const w = await get("/analysis/wordcloud?top=120");
  draw("chart-wordcloud", {
    title: { text: `弹幕词云（jieba 分词，去停用词；${w.lines} 条弹幕）`, textStyle: { fontSize: 13 } },
    tooltip: {},
    series: [{
      type: "wordCloud", shape: "circle", top: 30, width: "95%", height: "85%", gridSize: 6, sizeRange: [12, 46], rotationRange: [0, 0],
      textStyle: { fontFamily: FONT, color: () => ["#00a1d6", "#fb7299", "#faad14", "#52c41a", "#722ed1"][Math.floor(Math.random() * 5)] },
      data: w.words,
    }],
  });
  ready("panel-analysis", w.words.length);
}

async function zones() {
  const z = await get("/analysis/zones");
  draw("chart-zones", {
    title: { text: "分区热度排行榜（视频数 + 平均播放）", textStyle: { fontSize: 13 } },
    tooltip: { trigger: "axis" },
    legend: { data: ["视频数", "平均播放"], right: 0 },
    grid: { left: 50, right: 60, top: 40, bottom: 30 },
    xAxis: { type: "category", data: z.zones.map((x) => x.zone) },
    yAxis: [{ type: "value", name: "视频数" }, { type: "value", name: "平均播放" }],
    series: [
      { name: "视频数", type: "bar", data: z.zones.map((x) => x.videos), itemStyle: { color: "#00a1d6" } },
      { name: "平均播放", type: "line", yAxisIndex: 1, data: z.zones.map((x) => Math.round(x.avg_view)), itemStyle: { color: "#fb7299" } },
    ],
  });
  ready("panel-analysis", z.zones.length);
}

async function modelMetrics() {
  const m = await get("/model/metrics");
  const v = m.versions.find((x) => x.promoted) || m.versions[0];
  if (!v) return;
  document.getElementById("model-version").textContent = `当前模型版本 ${v.version}（测试集为训练数据中发布时间最晚的视频）`;
  const rows = Object.entries(v.horizons).map(([h, hz]) => {
    const x = hz.model || hz;
    const f = (k) => (x[k] == null ? "–" : x[k].toFixed(3));
    return `<tr><td>${h}</td><td>${f("accuracy")}</td><td>${f("precision")}</td><td>${f("recall")}</td><td>${f("f1")}</td><td>${f("roc_auc")}</td><td>${f("pr_auc")}</td><td>${x.n ?? hz.n_test ?? "–"}</td></tr>`;
  });
  document.getElementById("metrics-body").innerHTML = rows.join("");
  const s = v.short_model && v.short_model.metrics;
  if (s) {
    document.getElementById("short-model").textContent =
      `短请求原型模型 ${v.short_model.name}（seed 000 的 7 个字段，${v.short_model.horizon} 数据）：` +
      `准确率 ${s.accuracy.toFixed(3)}，召回率 ${s.recall.toFixed(3)}，ROC-AUC ${(s.roc_auc ?? 0).toFixed(3)}`;
  }
  const curves = v.curves || {};
  const line = (key) => Object.entries(curves).map(([h, c]) => ({ name: h, type: "line", showSymbol: false, data: c[key] }));
  const axes = (x, y) => ({
    grid: { left: 50, right: 20, top: 40, bottom: 40 },
    xAxis: { type: "value", min: 0, max: 1, name: x, nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "value", min: 0, max: 1, name: y },
    legend: { right: 0 },
    tooltip: { trigger: "axis" },
  });
  draw("chart-roc", { title: { text: "ROC 曲线", textStyle: { fontSize: 13 } }, ...axes("假正率 FPR", "真正率 TPR"), series: line("roc") });
  draw("chart-pr", { title: { text: "PR 曲线", textStyle: { fontSize: 13 } }, ...axes("召回率 Recall", "精确率 Precision"), series: line("pr") });
  ready("panel-model", rows.length + Object.keys(curves).length);
}

function safely(fn) {
  return (...args) => fn(...args).catch((err) => {
    console.error(err);
    document.body.dataset.errors = (document.body.dataset.errors || "") + err.message + "\n";
  });
}

document.getElementById("predict-form").addEventListener("submit", safely(predict));
document.getElementById("up-filter").addEventListener("submit", safely(upSearch));
document.getElementById("hot-horizon").addEventListener("change", safely(hotList));
window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));

[overview, hotList, predict, upSearch, engagement, clusters, heatmap, wordcloud, zones, modelMetrics].forEach((f) => safely(f)());
liveStream();
setInterval(safely(hotList), 5000);
