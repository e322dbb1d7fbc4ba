// A small, safe renderer for the GitHub-flavoured Markdown subset CDS cards use: paragraphs, "- " lists, **bold**,
// _italic_, `code`, [links](https://…), backslash escapes and HTML entities. Everything else is shown as text:
// no raw HTML from a card ever reaches the page.
(function () {
  "use strict";
  const ENTITIES = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#39;": "'" };
  const PUA = 0xe000; // escaped characters are parked in the private use area while inline rules run

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function inline(text) {
    let s = text.replace(/&(lt|gt|amp|quot|#39);/g, (m) => ENTITIES[m]);
    s = s.replace(/\\([\\`*_{}\[\]()#+\-.!|~<>])/g, (_, c) => String.fromCharCode(PUA + c.charCodeAt(0)));
    s = escapeHtml(s);
    s = s.replace(/`([^`]+)`/g, "<code>$1</code>");
    s = s.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
    s = s.replace(/(^|[\s(])_([^_]+)_(?=[\s).,;:!?]|$)/g, "$1<em>$2</em>");
    s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g,
      (_, label, url) => `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`);
    return s.replace(/[\ue000-\ue0ff]/g, (c) => escapeHtml(String.fromCharCode(c.charCodeAt(0) - PUA)));
  }

  function render(markdown) {
    const blocks = String(markdown || "").replace(/\r\n/g, "\n").split(/\n\s*\n/);
    return blocks.map((block) => {
      const lines = block.split("\n").filter((l) => l.trim() !== "");
      if (!lines.length) return "";
      if (lines.every((l) => /^\s*[-*] /.test(l))) {
        return "<ul>" + lines.map((l) => "<li>" + inline(l.replace(/^\s*[-*] /, "")) + "</li>").join("") + "</ul>";
      }
      return "<p>" + inline(lines.join(" ")) + "</p>";
    }).join("");
  }

  window.cdsMarkdown = { render, inline };
})();
