'use strict';
/*
 * Runs lwm2m-node-lib's LwM2M server and lets a Python test drive it over
 * stdin/stdout, one JSON object per line, so the test (not this script)
 * decides what the server does and checks what it saw.
 *
 *   argv[2]           UDP port to listen on (127.0.0.1; the library proxies its
 *                     own requests through it, so it must be a real port)
 *   stdin commands    {"id": 1, "cmd": "read"|"write"|"execute"|"observe"|"discover"|
 *                      "devices", "endpoint": "ep", "path": "/3/0/1",
 *                      "value": "..."}
 *   stdout replies    {"id": 1, "ok": true, "value": ...} or
 *                     {"id": 1, "ok": false, "error": "..."}
 *   stdout events     {"event": "ready"|"registered"|"updated"|"deregistered"|
 *                      "notification", ...}
 */

const lwm2m = require('lwm2m-node-lib').server;
// The library logs to stdout, which carries our protocol: move its log to stderr.
require('logops').setStream(process.stderr);
const readline = require('readline');

const port = parseInt(process.argv[2], 10);

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

const config = {
    port: port,
    lifetimeCheckInterval: 1000,
    udpWindow: 100,
    defaultType: 'Device',
    logLevel: process.env.LWM2M_NODE_LOG_LEVEL || 'FATAL',
    ipProtocol: 'udp4',
    serverProtocol: 'udp4',
    formats: [
        {name: 'application-vnd-oma-lwm2m/text', value: 1541},
        {name: 'application-vnd-oma-lwm2m/tlv', value: 1542},
        {name: 'application-vnd-oma-lwm2m/json', value: 1543},
        {name: 'application-vnd-oma-lwm2m/opaque', value: 1544}
    ],
    // The library's defaults: writes in the legacy 1541 text format, reads
    // asking for text/plain.
    writeFormat: 'application-vnd-oma-lwm2m/text',
    defaultAcceptFormat: 'text/plain'
};

function splitPath(path) {
    return path.split('/').filter((s) => s.length > 0);
}

function withDevice(endpoint, reply, fn) {
    lwm2m.getRegistry().getByName(endpoint, (error, device) => {
        if (error) {
            reply(error);
        } else {
            fn(device);
        }
    });
}

function errorText(error) {
    return error.message || error.name || String(error);
}

function handle(msg) {
    const reply = (error, value) => {
        if (error) {
            emit({id: msg.id, ok: false, error: errorText(error), name: error.name || null});
        } else {
            emit({id: msg.id, ok: true, value: value === undefined ? null : value});
        }
    };
    const p = msg.path ? splitPath(msg.path) : [];
    switch (msg.cmd) {
    case 'devices':
        lwm2m.getRegistry().list((error, devices) => reply(error, devices));
        break;
    case 'read':
        withDevice(msg.endpoint, reply, (d) => lwm2m.read(d.id, p[0], p[1], p[2], reply));
        break;
    case 'write':
        withDevice(msg.endpoint, reply, (d) =>
            lwm2m.write(d.id, p[0], p[1], p[2], msg.value, reply));
        break;
    case 'execute':
        withDevice(msg.endpoint, reply, (d) =>
            lwm2m.execute(d.id, p[0], p[1], p[2], msg.value || null, reply));
        break;
    case 'discover':
        // discover() tells object/instance/resource level apart by its arity.
        withDevice(msg.endpoint, reply, (d) =>
            lwm2m.discover(d.id, ...p, reply));
        break;
    case 'observe':
        withDevice(msg.endpoint, reply, (d) => {
            const onNotify = (value, objectType, objectId, resourceId) => emit({
                event: 'notification',
                path: '/' + objectType + '/' + objectId + '/' + resourceId,
                value: value
            });
            lwm2m.observe(d.id, p[0], p[1], p[2], onNotify, reply);
        });
        break;
    default:
        reply(new Error('unknown command ' + msg.cmd));
    }
}

lwm2m.start(config, (error, serverInfo) => {
    if (error) {
        emit({event: 'error', error: errorText(error)});
        process.exit(1);
    }
    lwm2m.setHandler(serverInfo, 'registration',
        (endpoint, lifetime, version, binding, payload, callback) => {
            emit({event: 'registered', endpoint, lifetime, version, binding, payload});
            callback();
        });
    lwm2m.setHandler(serverInfo, 'updateRegistration', (device, payload, callback) => {
        emit({event: 'updated', endpoint: device.name, payload: payload});
        callback();
    });
    lwm2m.setHandler(serverInfo, 'unregistration', (device, callback) => {
        emit({event: 'deregistered', endpoint: device.name});
        callback();
    });
    emit({event: 'ready', port: port});
    const rl = readline.createInterface({input: process.stdin});
    rl.on('line', (line) => {
        if (line.trim()) {
            handle(JSON.parse(line));
        }
    });
    // lwm2m.stop() never calls back when observations are open: just leave.
    rl.on('close', () => process.exit(0));
});
