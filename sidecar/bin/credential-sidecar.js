#!/usr/bin/env node
// The bin shim stays plain JavaScript so npm links it as-is; Node 24 strips types from the .ts it imports.
import { main } from '../src/main.ts'

// Exit explicitly: the daemon has closed its servers by the time main resolves, and nothing
// (a keep-alive socket, a background refresh) should keep a stopped process alive.
process.exit(await main(process.argv.slice(2)))
