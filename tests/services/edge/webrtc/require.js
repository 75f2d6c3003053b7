// A CommonJS loader for the test page: JsSIP's npm package is CommonJS (lib/), with no browser
// bundle, and a bundler would be one more tool for one page. Each module is fetched (synchronous
// XHR, from the test's own HTTP server) and run once; a package's "browser" entry wins over its
// "main" (debug's browser build needs no Node built-ins).
(function () {
  "use strict";
  const root = new URL("node_modules/", document.baseURI).href;
  const modules = {};

  function get(url, method) {
    const request = send(url, method || "GET", 3);
    // A directory answers with a redirect to its listing: not a module.
    return request.status === 200 && request.responseURL === url ? request.responseText : null;
  }

  // A fetch that fails at the network level (a CI machine at load 17 reset one of the
  // hundreds this loader makes) is tried again, twice; an HTTP answer is final.
  function send(url, method, tries) {
    const request = new XMLHttpRequest();
    request.open(method, url, false);
    try {
      request.send();
    } catch (error) {
      if (tries <= 1) throw error;
      return send(url, method, tries - 1);
    }
    return request;
  }

  function file(url) {
    const base = url.replace(/\/$/, "");
    for (const candidate of [base, base + ".js", base + ".json", base + "/index.js"]) {
      if (get(candidate, "HEAD") !== null) return candidate;
    }
    throw new Error("require: no module at " + url);
  }

  function resolve(name, from) {
    if (name.startsWith(".")) return file(new URL(name, from).href);
    const directory = root + name + "/";
    const manifest = JSON.parse(get(directory + "package.json"));
    const entry = typeof manifest.browser === "string" ? manifest.browser : manifest.main;
    return file(new URL(entry || "index.js", directory).href);
  }

  function load(url) {
    if (modules[url]) return modules[url].exports;
    const module = (modules[url] = { exports: {} });
    const source = get(url);
    if (url.endsWith(".json")) {
      module.exports = JSON.parse(source);
      return module.exports;
    }
    const run = new Function("require", "module", "exports", source + "\n//# sourceURL=" + url);
    run((name) => load(resolve(name, url)), module, module.exports);
    return module.exports;
  }

  window.require = (name) => load(resolve(name, document.baseURI));
})();
