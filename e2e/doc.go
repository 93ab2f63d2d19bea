// Package e2e tests ws2sse end to end: a real ws2sse process, a real
// WebSocket feed, and a real browser (headless Chromium) reading it.
package e2e
