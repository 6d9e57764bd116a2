package org.edgert.demo;

import org.edgert.Edgert;
import org.edgert.EdgertException;

/**
 * The demo's chat logic without Android types, so a plain JVM test (tests/jni/JniSmoke.java)
 * drives exactly what the app runs: load once, answer typed messages with the model's chat
 * template, stream the answer to the screen. Every failure becomes a message on the screen,
 * never an exception on the worker thread (which would kill the app).
 * Call from one worker thread only.
 */
public final class ChatSession implements AutoCloseable {
    /** Where text goes; MainActivity posts these to the UI thread. */
    public interface Screen {
        void append(String text);
        void showError(String message);
    }

    private final String modelPath;
    private final int maxNewTokens;
    private Edgert edgert;

    public ChatSession(String modelPath, int maxNewTokens) {
        this.modelPath = modelPath;
        this.maxNewTokens = maxNewTokens;
    }

    /** Loads the model; false (with the reason on screen) if it cannot. */
    public boolean load(Screen screen) {
        if (edgert != null) return true;
        try {
            edgert = new Edgert(modelPath, 2048, 0);
            return true;
        } catch (EdgertException | IllegalArgumentException e) {
            screen.showError("Cannot load " + modelPath + ": " + e.getMessage());
            return false;
        }
    }

    /** Answers one message, streaming the reply to screen. */
    public void send(String message, Screen screen) {
        if (message == null || message.trim().isEmpty()) {
            screen.showError("Type a message first.");
            return;
        }
        if (!load(screen)) return;
        try {
            edgert.chat(message, maxNewTokens, 0.0f, 0, text -> {
                screen.append(text);
                return true;
            });
            screen.append("\n");
        } catch (EdgertException | IllegalArgumentException | IllegalStateException e) {
            screen.showError(e.getMessage());
        }
    }

    @Override
    public void close() {
        if (edgert != null) edgert.close();
        edgert = null;
    }
}
