// @ts-check
// rtc-bridge demo page entry point (kept at /static/app.js: the page and older links load it).
// The page is plain ES modules in js/, no build step; js/main.js says which file does what.
import './js/main.js';
