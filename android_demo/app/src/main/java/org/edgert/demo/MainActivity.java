package org.edgert.demo;

import android.app.Activity;
import android.os.Bundle;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;

import org.edgert.Edgert;
import org.edgert.EdgertException;

import java.io.File;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Minimal demo: loads model.edgt from the app's files dir (push it with
 * `adb push smollm2.edgt /sdcard/Android/data/org.edgert.demo/files/model.edgt`) and generates
 * from comma-separated token ids typed into the box, streaming ids as they come. A real app puts a
 * tokenizer in front (the file's metadata carries tokenizer.json); see android_demo/README.md.
 */
public class MainActivity extends Activity {
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private Edgert edgert;

    @Override
    protected void onCreate(Bundle state) {
        super.onCreate(state);
        setContentView(R.layout.activity_main);
        TextView output = findViewById(R.id.output);
        EditText input = findViewById(R.id.input);
        Button run = findViewById(R.id.run);

        File model = new File(getExternalFilesDir(null), "model.edgt");
        worker.execute(() -> {
            try {
                edgert = new Edgert(model.getPath(), 2048, 0);
                runOnUiThread(() -> output.setText("Loaded (" + Edgert.isa() + ")\n"));
            } catch (EdgertException e) {
                runOnUiThread(() -> output.setText(e.getMessage()));
            }
        });

        run.setOnClickListener(v -> {
            String[] parts = input.getText().toString().split(",");
            int[] ids = new int[parts.length];
            for (int i = 0; i < parts.length; i++) ids[i] = Integer.parseInt(parts[i].trim());
            worker.execute(() -> {
                if (edgert == null) return;
                edgert.trim(0);
                edgert.generate(ids, 64, 0.0f, 0, null, token -> {
                    runOnUiThread(() -> output.append(token + " "));
                    return true;
                });
            });
        });
    }

    @Override
    protected void onDestroy() {
        worker.execute(() -> {
            if (edgert != null) edgert.close();
        });
        worker.shutdown();
        super.onDestroy();
    }
}
