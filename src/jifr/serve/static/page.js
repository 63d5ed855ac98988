// The page: pick a user, see their top items as cards with their key frames, and compare each
// item's frame order for the user with the mean user's; a second view lists the user's training
// items. Everything comes from the JSON API under /v1.
"use strict";

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function getJson(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(detail);
  }
  return body;
}

// A frame's picture, or its title in a box when the dataset has no image for it.
function picture(frame, className) {
  if (frame.image_url) {
    return element("img", {
      src: frame.image_url, alt: frame.title || frame.frame_id, class: className,
      "data-frame-id": frame.frame_id,
    });
  }
  return element("div", { class: `${className} no-image`, "data-frame-id": frame.frame_id,
                          text: frame.title || frame.frame_id });
}

function card(item) {
  const children = [];
  if (item.key_frame) children.push(picture(item.key_frame, "key-frame"));
  children.push(element("h3", { text: item.title || item.item_id }));
  children.push(element("p", { class: "score", text: `#${item.rank} · score ${item.score.toFixed(3)}` }));
  const node = element("article", { class: "card", tabindex: "0", "data-item-id": item.item_id }, children);
  const show = () => showFrames(item, node);
  node.addEventListener("mouseenter", show);
  node.addEventListener("focus", show);
  node.addEventListener("click", show);
  return node;
}

function frameList(list, frames) {
  list.replaceChildren(...frames.map((frame) => element("li", { "data-frame-id": frame.frame_id }, [
    picture(frame, "thumb"),
    element("span", { text: `${frame.title || frame.frame_id} ${frame.score.toFixed(3)}` }),
  ])));
}

function showFrames(item, node) {
  for (const other of document.querySelectorAll(".card.selected")) other.classList.remove("selected");
  node.classList.add("selected");
  $("detail").hidden = false;
  $("detail-title").textContent = `Frames of ${item.title || item.item_id}`;
  frameList($("user-order"), item.frames);
  if ($("mean-order")) frameList($("mean-order"), item.mean_user_frames);
}

function showTraining(training) {
  const items = training.items.map((item) => element("div", { class: "history-item", "data-item-id": item.item_id }, [
    element("h3", { text: item.title || item.item_id }),
    element("div", { class: "strip" }, item.frames.map((frame) => picture(frame, "thumb"))),
  ]));
  $("history-items").replaceChildren(...items);
}

async function load(user, k) {
  $("status").textContent = `Loading ${user} ...`;
  const query = new URLSearchParams({ k: String(k) });
  const [recommendations, training] = await Promise.all([
    getJson(`/v1/users/${encodeURIComponent(user)}/recommendations?${query}`),
    getJson(`/v1/users/${encodeURIComponent(user)}/training-items`),
  ]);
  $("cards").replaceChildren(...recommendations.items.map(card));
  $("detail").hidden = true;
  showTraining(training);
  $("status").textContent =
    `${recommendations.items.length} items for ${user} (${recommendations.model}); ` +
    `${training.items.length} training items`;
  document.body.dataset.loadedUser = user;
}

async function suggest(prefix) {
  const found = await getJson(`/v1/users?${new URLSearchParams({ prefix, limit: "50" })}`);
  $("user-ids").replaceChildren(...found.users.map((user) => element("option", { value: user })));
}

function choose(view) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-pressed", String(tab.dataset.view === view));
  }
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
}

async function submit(user, k) {
  try {
    await load(user, k);
    history.replaceState(null, "", `?${new URLSearchParams({ user, k: String(k) })}`);
  } catch (error) {
    $("status").textContent = `Could not load ${user}: ${error.message}`;
  }
}

$("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  submit($("user").value.trim(), Number($("k").value) || 10);
});
$("user").addEventListener("input", () => suggest($("user").value.trim()).catch(() => {}));
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => choose(tab.dataset.view));

const initial = new URLSearchParams(window.location.search);
if (initial.get("user")) {
  $("user").value = initial.get("user");
  if (initial.get("k")) $("k").value = initial.get("k");
  submit($("user").value, Number($("k").value) || 10);
}
