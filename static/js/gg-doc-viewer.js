// gg-doc-viewer: previews an attachment in a dialog. Served as /gg-doc-viewer.js.
//   openViewer({name, kind: "pdf"|"image"|"audio"|"text"|…, blob?, url?, text?, textUrl?, page?})
// PDFs are drawn with pdf.js (/vendor/pdf.min.mjs), page by page onto canvases, from `page`
// (a citation's) on, scrolled to it; images and audio use the browser's own elements;
// anything else shows its text (fetched from `textUrl` when given).
/* global gettext */

const MAX_PDF_PAGES = 50; // drawn at once; the rest are listed as text

let dialog = null;

function ensureDialog() {
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.className = "gg-viewer";
  dialog.setAttribute("aria-labelledby", "gg-viewer-title");
  const header = document.createElement("header");
  const title = document.createElement("h2");
  title.id = "gg-viewer-title";
  const close = document.createElement("button");
  close.type = "button";
  close.className = "icon";
  close.textContent = "✕";
  close.setAttribute("aria-label", gettext("Close"));
  close.addEventListener("click", () => dialog.close());
  header.append(title, close);
  const body = document.createElement("div");
  body.className = "body";
  dialog.append(header, body);
  dialog.addEventListener("close", () => {
    for (const media of body.querySelectorAll("audio,video")) media.pause();
    body.replaceChildren();
  });
  document.body.append(dialog);
  return dialog;
}

function sourceUrl({ blob, url }) {
  if (blob) return URL.createObjectURL(blob);
  return url || null;
}

async function drawPdf(body, source, fallbackText, wanted) {
  const status = document.createElement("p");
  status.textContent = gettext("Loading PDF…");
  body.append(status);
  const pdfjs = await import("/vendor/pdf.min.mjs");
  pdfjs.GlobalWorkerOptions.workerSrc = "/vendor/pdf.worker.min.mjs";
  const data = source.blob ? new Uint8Array(await source.blob.arrayBuffer()) : undefined;
  const pdf = await pdfjs.getDocument(data ? { data } : { url: source.url }).promise;
  status.textContent = interpolate(ngettext("%s page", "%s pages", pdf.numPages), [pdf.numPages]);
  const width = Math.min(body.clientWidth || 800, 900) - 24;
  const target = Math.min(Math.max(Number(wanted) || 1, 1), pdf.numPages);
  const first = Math.max(1, Math.min(target - 2, pdf.numPages - MAX_PDF_PAGES + 1));
  for (let number = first; number <= Math.min(pdf.numPages, first + MAX_PDF_PAGES - 1); number++) {
    const page = await pdf.getPage(number);
    const base = page.getViewport({ scale: 1 });
    const viewport = page.getViewport({ scale: (width / base.width) * (window.devicePixelRatio || 1) });
    const canvas = document.createElement("canvas");
    canvas.width = viewport.width;
    canvas.height = viewport.height;
    canvas.style.width = `${width}px`;
    canvas.setAttribute("aria-label", interpolate(gettext("Page %s"), [number]));
    canvas.dataset.page = number;
    body.append(canvas);
    await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport }).promise;
    if (number === target && wanted) {
      canvas.classList.add("cited");
      canvas.scrollIntoView({ block: "start" });
    }
  }
  if (wanted) body.closest("dialog").dataset.page = target;
  if (pdf.numPages > MAX_PDF_PAGES && fallbackText) showText(body, fallbackText);
}

function showText(body, text) {
  const pre = document.createElement("pre");
  pre.textContent = text || gettext("(no text)");
  body.append(pre);
}

export async function openViewer(item) {
  const box = ensureDialog();
  const body = box.querySelector(".body");
  body.replaceChildren();
  box.querySelector("h2").textContent = item.name || gettext("Attachment");
  box.dataset.kind = item.kind || "text";
  delete box.dataset.rendered;
  box.showModal();
  const url = sourceUrl(item);
  try {
    if (item.kind === "pdf" && url) {
      await drawPdf(body, item, item.text, item.page);
    } else if (item.textUrl) {
      const response = await fetch(item.textUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      showText(body, await response.text());
    } else if (item.kind === "image" && (url || item.dataUrl)) {
      const img = document.createElement("img");
      img.src = url || item.dataUrl;
      img.alt = item.name || "";
      body.append(img);
    } else if (item.kind === "audio" && url) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.src = url;
      body.append(audio);
      if (item.text) showText(body, item.text);
    } else {
      showText(body, item.text);
    }
  } catch (error) {
    const p = document.createElement("p");
    p.textContent = gettext("Could not open this file.") + " " + (error?.message || "");
    body.append(p);
    if (item.text) showText(body, item.text);
  }
  box.dataset.rendered = "true"; // everything drawn (tests and screenshots wait for it)
  return box;
}
