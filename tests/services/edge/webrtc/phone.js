// The WebRTC phone the browser test drives (over the DevTools protocol): JsSIP registers over
// WSS, answers every call, places one and hangs it up once answered. Each step is a function
// returning a promise; `window.phone.events` is what happened, in order, for the test to read.
/* global require */
(function () {
  "use strict";
  const JsSIP = require("jssip");
  const media = { mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } };
  const events = [];
  let ua = null;

  function note(what) {
    events.push(what);
  }

  function watch(session, label) {
    session.on("confirmed", () => note(label + ":confirmed"));
    session.on("ended", (e) => note(label + ":ended:" + e.originator + ":" + e.cause));
    session.on("failed", (e) => note(label + ":failed:" + e.originator + ":" + e.cause));
  }

  function start(settings) {
    return new Promise((resolve, reject) => {
      ua = new JsSIP.UA({
        sockets: [new JsSIP.WebSocketInterface(settings.url)],
        uri: "sip:" + settings.user + "@" + settings.domain,
        password: settings.password,
        register: true,
        session_timers: false,
      });
      ua.on("registered", () => {
        note("registered");
        resolve("registered");
      });
      ua.on("registrationFailed", (e) => {
        note("registrationFailed:" + e.cause);
        reject(new Error("registration failed: " + e.cause));
      });
      ua.on("newRTCSession", (e) => {
        if (e.originator !== "remote") return;
        note("incoming:" + e.request.from.uri.user);
        watch(e.session, "incoming");
        e.session.answer(media);
      });
      ua.start();
    });
  }

  function call(number, domain) {
    return new Promise((resolve) => {
      const session = ua.call("sip:" + number + "@" + domain, media);
      watch(session, "outgoing");
      session.on("confirmed", () => session.terminate());
      session.on("ended", () => resolve(events.slice()));
      session.on("failed", () => resolve(events.slice()));
    });
  }

  window.phone = { start, call, events };
  note("loaded");
})();
