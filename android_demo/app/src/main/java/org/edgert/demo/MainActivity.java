package org.edgert.demo;

import android.app.Activity;
import android.os.Bundle;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;

import java.io.File;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Chat demo: loads model.edgt from the app's files dir (push it with
 * `adb push smollm2.edgt /sdcard/Android/data/org.edgert.demo/files/model.edgt`), sends the typed
 * message through the model's chat template and shows the answer as it streams in. All model
 * work runs on one worker thread (ChatSession), which reports failures on screen.
 */
public class MainActivity extends Activity {
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private ChatSession session;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        TextView output = findViewById(R.id.output);
        EditText input = findViewById(R.id.input);
        Button send = findViewById(R.id.run);

        ChatSession.Screen screen = new ChatSession.Screen() {
            @Override
            public void append(String text) {
                runOnUiThread(() -> output.append(text));
            }

            @Override
            public void showError(String message) {
                runOnUiThread(() -> output.append("\n[" + message + "]\n"));
            }
        };
        File model = new File(getExternalFilesDir(null), "model.edgt");
        session = new ChatSession(model.getPath(), 256);
        worker.execute(() -> {
            if (session.load(screen)) screen.append("Model loaded. Ask something.\n");
        });

        send.setOnClickListener(v -> {
            String message = input.getText().toString();
            input.setText("");
            output.append("\n> " + message + "\n");
            worker.execute(() -> session.send(message, screen));
        });
    }

    @Override
    protected void onDestroy() {
        worker.execute(() -> session.close());
        worker.shutdown();
        super.onDestroy();
    }
}
