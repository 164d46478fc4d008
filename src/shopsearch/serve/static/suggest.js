// Autocomplete of the search box: completions from GET /suggest while the user types, shown in
// a listbox under the box. ↓/↑ move through them, Enter (or a click) searches the highlighted
// one, Escape closes the list; Enter with nothing highlighted searches what was typed.

const SIZE = 8;
const DELAY_MS = 80; // wait for a pause in typing before asking

/**
 * Attach the completion list to the search box.
 * @param {{input: HTMLInputElement, form: HTMLFormElement, list: HTMLUListElement,
 *          domain: HTMLSelectElement}} parts the box, its form, the (empty) list, the market.
 */
export function attachSuggestions({ input, form, list, domain }) {
  let shown = []; // the suggested queries, in list order
  let active = -1; // index of the highlighted one (-1: none)
  let timer = null;
  let asked = 0; // number of the latest request; answers to older ones are dropped

  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-expanded", "false");

  function close() {
    asked += 1;
    clearTimeout(timer);
    shown = [];
    active = -1;
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function highlight(index) {
    active = index;
    list.querySelectorAll("[role=option]").forEach((option, i) => {
      option.setAttribute("aria-selected", String(i === index));
    });
    if (index >= 0) input.setAttribute("aria-activedescendant", `${list.id}-${index}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function pick(query) {
    close();
    input.value = query;
    form.requestSubmit();
  }

  function option(suggestion, index, typed) {
    const li = document.createElement("li");
    li.id = `${list.id}-${index}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", "false");
    li.dataset.testid = "autocomplete-option";
    li.dataset.query = suggestion.query;
    li.className = suggestion.typo ? "autocomplete-option typo" : "autocomplete-option";
    const start = suggestion.query.startsWith(typed) && !suggestion.typo ? typed.length : 0;
    const completed = document.createElement("strong");
    completed.textContent = suggestion.query.slice(start);
    li.append(suggestion.query.slice(0, start), completed);
    // mousedown, not click: the box keeps its focus, so blur does not close the list first
    li.addEventListener("mousedown", (event) => {
      event.preventDefault();
      pick(suggestion.query);
    });
    li.addEventListener("mousemove", () => highlight(index));
    return li;
  }

  async function ask() {
    const typed = input.value;
    if (!typed.trim()) {
      close();
      return;
    }
    const mine = ++asked;
    const params = new URLSearchParams({ q: typed, size: String(SIZE) });
    if (domain.value) params.set("domain", domain.value);
    let body = null;
    try {
      const response = await fetch(`/suggest?${params}`, { headers: { Accept: "application/json" } });
      body = response.ok ? await response.json() : null;
    } catch {
      body = null; // no completions is the answer to any failure: the box still searches
    }
    if (mine !== asked || input.value !== typed) return;
    const suggestions = body?.suggestions ?? [];
    if (!suggestions.length) {
      close();
      return;
    }
    const lower = typed.toLowerCase().replace(/\s+/g, " ").trimStart();
    shown = suggestions.map((s) => s.query);
    active = -1;
    list.replaceChildren(...suggestions.map((s, i) => option(s, i, lower)));
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    input.removeAttribute("aria-activedescendant");
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(ask, DELAY_MS);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      close();
      return;
    }
    if (list.hidden || !shown.length) return;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      highlight(active + 1 < shown.length ? active + 1 : 0);
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      highlight(active > 0 ? active - 1 : shown.length - 1);
    } else if (event.key === "Enter" && active >= 0) {
      event.preventDefault();
      pick(shown[active]);
    }
  });
  input.addEventListener("blur", close);
  form.addEventListener("submit", close);
  domain.addEventListener("change", close);
}
