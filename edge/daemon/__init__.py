"""The device daemon (`edgecascade agent run`): front ends (local V2 HTTP API, MQTT requests,
camera) around one Agent, and the lifecycle that starts and stops them."""
